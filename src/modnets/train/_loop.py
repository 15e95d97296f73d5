"""The loop core every training loop shares: one optimiser step, one loop state, one logging path.

- :class:`Stepper` is one step: zero the gradients, run the forward pass (under autocast when asked),
  guard the loss terms and the gradients against NaN and inf, backpropagate, clip, step the optimiser.
  A non-finite step raises :class:`~modnets.errors.NumericalError` naming the step, the module and the
  quantity, or is skipped and counted (``on_nonfinite="skip"``).
- :class:`LoopState` is what a loop has done (steps, seconds, history, running means, skipped steps); it
  goes into checkpoints whole, and :meth:`LoopState.record` is the one place where a step's terms become a
  history row, a logger line and the progress bar's figures.

:func:`~modnets.train.fit` (epochs over a data set) and the agents' curriculum loop are both built on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import ConfigError, InterfaceError, NumericalError
from ._device import autocast
from ._guards import nonfinite_grad, nonfinite_loss
from ._logging import RunLogger

__all__ = ["NONFINITE", "LoopState", "StepOutcome", "Stepper", "progress_bar"]

NONFINITE = ("raise", "skip")


@dataclass
class LoopState:
    """What a training loop has done so far (saved in its checkpoints).

    Attributes:
        steps: optimiser steps taken (skipped ones included).
        seconds: training time before this process's start (a resumed run adds to it).
        history: one dict of scalars per logged step (with ``step`` and ``seconds``).
        running: exponential running means of the logged terms (the progress bar's figures).
        skipped: steps whose update was dropped for a non-finite loss or gradient.
    """

    steps: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    running: dict[str, float] = field(default_factory=dict)
    skipped: int = 0
    _start: float = field(default=0.0, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._start = time.perf_counter() - self.seconds

    def elapsed(self) -> float:
        """Training seconds so far, over the whole (resumed) run."""
        return time.perf_counter() - self._start

    def out_of_time(self, max_seconds: float | None) -> bool:
        """Whether the time budget is spent (never, without one)."""
        return max_seconds is not None and self.elapsed() > max_seconds

    def state_dict(self) -> dict[str, Any]:
        """The state as checkpointable values, with the seconds up to now."""
        state = asdict(self)
        state.pop("_start")
        state["seconds"] = self.elapsed()
        return state

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> LoopState:
        return cls(steps=state["steps"], seconds=state["seconds"], history=list(state["history"]),
                   running=dict(state["running"]), skipped=state["skipped"])

    def record(
        self,
        terms: Mapping[str, float],
        *,
        log: bool,
        running: bool = True,
        extra: Mapping[str, float] | None = None,
        logger: RunLogger | None = None,
        prefix: str = "train",
        bar: Any = None,
    ) -> None:
        """Account a finished step's scalars: the running means (unless ``running`` is false: a skipped step),
        and when ``log`` is true a history row (with the ``extra`` fields, e.g. the curriculum level, which have
        no running mean), a logger line (``prefix/name``) and the progress bar's figures."""
        for k, v in terms.items() if running else ():
            self.running[k] = 0.9 * self.running.get(k, v) + 0.1 * v
        if not log:
            return
        row = {"step": self.steps, "seconds": self.elapsed(), **(extra or {}), **terms}
        if self.skipped:
            row["skipped"] = self.skipped
        self.history.append(row)
        if logger is not None:
            logger.log(self.steps, **{f"{prefix}/{k}": v for k, v in row.items() if k != "step"})
        if bar is not None:
            shown = {**(extra or {}), **self.running}
            bar.set_postfix({k: f"{v:.3g}" if isinstance(v, float) else v for k, v in shown.items()}, refresh=False)


@dataclass
class StepOutcome:
    """One step's result: its terms (detached; ``None`` when the forward pass itself failed), whether its
    update was skipped, and the mean absolute gradient per parameter when it was measured."""

    terms: dict[str, Tensor] | None
    skipped: bool
    grad_abs: float | None = None


class Stepper:
    """One optimiser step on ``module``'s trainable parameters (Adam).

    Args:
        module: what is trained (an objective, an agent, an operator).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        on_nonfinite: ``"raise"`` or ``"skip"`` (see the module docstring).
        device: where the forward pass runs (for autocast).
        precision: ``"fp32"`` or ``"bf16"`` (autocast of the forward pass).
        agree: makes every process of a data-parallel run agree on a flag (any process true -> all true);
            the identity in one process.
        owner: the name error messages give the trained module (default: its class name).

    Raises:
        ConfigError: a module without trainable parameters, or an unknown ``on_nonfinite``.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        lr: float,
        weight_decay: float = 0.0,
        grad_clip: float | None,
        on_nonfinite: str = "raise",
        device: torch.device | None = None,
        precision: str = "fp32",
        agree: Callable[[bool], bool] = bool,
        owner: str | None = None,
    ):
        self.params = [p for p in module.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError(f"{type(module).__name__} has no trainable parameters (none requires gradients)")
        if on_nonfinite not in NONFINITE:
            raise ConfigError(f"on_nonfinite must be one of {NONFINITE}, got {on_nonfinite!r}")
        self.owner = owner or type(module).__name__
        self.names = {p: n for n, p in module.named_parameters()}
        self.optimizer = torch.optim.Adam(self.params, lr=lr, weight_decay=weight_decay)
        self.grad_clip, self.on_nonfinite = grad_clip, on_nonfinite
        self.device = device or self.params[0].device
        self.precision, self.agree = precision, agree

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group (a schedule's step)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def __call__(
        self, forward: Callable[[], Mapping[str, Tensor] | None], step: int, *, scale: float = 1.0,
        measure: bool = False,
    ) -> StepOutcome | None:
        """Run one step.

        Args:
            forward: computes the named loss terms (``"loss"`` is minimised), or ``None`` when there is nothing
                to train on (then no step is taken and ``None`` is returned).
            step: the step's number (1-based), for error messages.
            scale: multiplies the loss before backpropagation (a process's share of a data-parallel batch).
            measure: also return the mean absolute gradient per parameter, before clipping.

        Raises:
            NumericalError: a non-finite input, interface value, loss term or gradient with ``"raise"``.
        """
        self.optimizer.zero_grad(set_to_none=True)
        terms: Mapping[str, Tensor] | None = None
        bad: NumericalError | None = None
        try:
            with autocast(self.device, self.precision):
                terms = forward()
        except InterfaceError as e:  # interface checking on: a NaN or inf between modules
            if not e.nonfinite:
                raise
            bad = NumericalError(f"step {step}: {e}", step=step, module=e.where or self.owner,
                                 quantity="interface value")
        except NumericalError as e:  # an objective's own input guard
            bad = e
        if bad is None and terms is None:
            return None
        if bad is None and "loss" not in terms:
            raise ConfigError(f"{self.owner}'s loss terms must include 'loss' (the quantity minimised), got "
                              f"{sorted(terms)}")
        if bad is None:
            assert terms is not None
            bad = nonfinite_loss(terms, step, self.owner)
        if self.agree(bad is not None) and bad is None:
            bad = NumericalError(f"step {step}: a loss term is not finite in another process", step=step,
                                 module=self.owner, quantity="loss")
        if bad is None:
            assert terms is not None
            (terms["loss"] * scale).backward()
            bad = nonfinite_grad(self.params, self.names, step)
        if bad is not None:
            if self.on_nonfinite == "raise":
                raise bad
            self.optimizer.zero_grad(set_to_none=True)
            detached = None if terms is None else {k: v.detach() for k, v in terms.items()}
            return StepOutcome(detached, skipped=True)
        grad_abs = None
        if measure:
            n = sum(p.numel() for p in self.params)
            grad_abs = sum(float(p.grad.abs().sum()) for p in self.params if p.grad is not None) / n
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        assert terms is not None
        return StepOutcome({k: v.detach() for k, v in terms.items()}, skipped=False, grad_abs=grad_abs)


class _NoBar:
    """Stands in for a progress bar that is off (worker processes then never touch tqdm's lock)."""

    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, *args: Any, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


def progress_bar(*, total: int | None, initial: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar, or a silent stand-in when ``enabled`` is false."""
    if not enabled:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)
