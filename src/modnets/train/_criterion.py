"""Training criteria of thesis 3.2.2: error rate, output saturation, a tiny or stagnant loss.

An operator's output is wrong when it does not decode to the expected result: a pointer must have exactly
one value above 0.5, at the expected position; a categorical output must put its largest probability on
the expected class at every position. Saturation is the fraction of output values more than 0.1 away from
the one-hot reference. Training (at one curriculum level) is done when, averaged over a window of
batches, the error rate is at most 1 % and, for operators, the saturation is at most 1 %; or when the loss
falls below 1e-6; or when it has stopped improving.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._config import Config
from ..errors import ConfigError, ShapeError
from ..types import DataType, OneHot, Probs

__all__ = [
    "Criterion",
    "CriterionMonitor",
    "OutputTerms",
    "category_errors",
    "output_terms",
    "pointer_errors",
    "saturation",
]

#: How a level of training ended, besides the limits of the run.
CRITERION, TINY_LOSS, STAGNANT = "criterion", "tiny loss", "stagnant"


def saturation(x: Tensor, reference: Tensor, threshold: float = 0.1) -> Tensor:
    """Fraction of values more than ``threshold`` away from the one-hot ``reference`` (thesis 3.2.2).

    Args:
        x: ``(...)`` outputs.
        reference: ``(...)`` one-hot (or null) targets, same shape.

    Returns:
        scalar in [0, 1].

    Example:
        >>> saturation(torch.tensor([[0.95, 0.05], [0.7, 0.3]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        tensor(0.5000)
    """
    if x.shape != reference.shape:
        raise ShapeError(f"saturation needs outputs and references of one shape, got {tuple(x.shape)} and "
                         f"{tuple(reference.shape)}")
    return OneHot.saturation(x, reference, threshold)


def pointer_errors(x: Tensor, target: Tensor) -> Tensor:
    """Which pointers are wrong: not exactly one value above 0.5, or not at the target's position.

    Equivalently, some value rounds to the wrong side of 0.5. A null target (all zeros) is met by an
    output with no value above 0.5.

    Args:
        x: ``(batch, L)`` pointer outputs in [0, 1].
        target: ``(batch, L)`` one-hot (or all-zero) targets.

    Returns:
        ``(batch,)`` bool.

    Example:
        >>> pointer_errors(torch.tensor([[0.1, 0.9, 0.2], [0.6, 0.7, 0.0], [0.2, 0.4, 0.1]]),
        ...                torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))
        tensor([False,  True,  True])
    """
    if x.shape != target.shape or x.dim() < 2:
        raise ShapeError(f"pointer_errors needs (batch, L) outputs and targets, got {tuple(x.shape)} and "
                         f"{tuple(target.shape)}")
    return ((x > 0.5) != (target > 0.5)).flatten(1).any(1)


def category_errors(probs: Tensor, target: Tensor) -> Tensor:
    """Which examples have a position whose most likely class is not the target class.

    Args:
        probs: ``(batch, L, C)`` class probabilities.
        target: ``(batch, L)`` long target classes.

    Returns:
        ``(batch,)`` bool.

    Example:
        >>> p = torch.tensor([[[0.8, 0.2], [0.4, 0.6]], [[0.8, 0.2], [0.7, 0.3]]])
        >>> category_errors(p, torch.tensor([[0, 1], [0, 1]]))
        tensor([False,  True])
    """
    if probs.dim() < 2 or probs.shape[:-1] != target.shape:
        raise ShapeError(f"category_errors needs (batch, ..., C) probabilities and (batch, ...) targets, got "
                         f"{tuple(probs.shape)} and {tuple(target.shape)}")
    return (probs.argmax(-1) != target).flatten(1).any(1)


class OutputTerms(NamedTuple):
    """Loss and criterion measures of one batch of a functional's outputs.

    Attributes:
        loss: scalar cross-entropy, differentiable.
        error: fraction of wrong examples.
        saturation: fraction of values more than 0.1 away from the one-hot reference.
    """

    loss: Tensor
    error: float
    saturation: float


def output_terms(kind: DataType, out: Tensor, target: Tensor) -> OutputTerms:
    """Cross-entropy, error rate and saturation of outputs of data type ``kind`` against their targets.

    A categorical output (:class:`~modnets.types.Probs` and its refinements) of ``C`` classes may have one
    class more than the target's last dimension: the null class, the target of null (all-zero) target
    vectors. Any other output is a value in [0, 1] per entry (a pointer, a mask), with binary
    cross-entropy and :func:`pointer_errors`.

    Args:
        kind: the output's data type.
        out: ``(batch, ...)`` outputs, or ``(batch, ..., C)`` probabilities.
        target: ``(batch, ...)`` targets in [0, 1]; ``(batch, ..., C or C - 1)`` one-hot or null vectors.
    """
    if isinstance(kind, Probs):
        n_classes = out.shape[-1]
        if out.shape[:-1] != target.shape[:-1] or target.shape[-1] not in (n_classes, n_classes - 1):
            raise ShapeError(f"{kind} outputs {tuple(out.shape)} do not fit targets {tuple(target.shape)}")
        index = target.argmax(-1)
        if target.shape[-1] == n_classes - 1:
            index = torch.where(target.sum(-1) < 0.5, n_classes - 1, index)
        loss = F.nll_loss(out.clamp_min(1e-12).log().flatten(0, -2), index.flatten())
        with torch.no_grad():
            error = category_errors(out, index).float().mean()
            sat = saturation(out, F.one_hot(index, n_classes).to(out.dtype))
        return OutputTerms(loss, float(error), float(sat))
    if out.shape != target.shape:
        raise ShapeError(f"{kind} outputs {tuple(out.shape)} do not fit targets {tuple(target.shape)}")
    loss = F.binary_cross_entropy(out.clamp(1e-7, 1 - 1e-7), target)
    with torch.no_grad():
        error = pointer_errors(out.flatten(1), target.flatten(1)).float().mean()
        sat = saturation(out, target)
    return OutputTerms(loss, float(error), float(sat))


@dataclass
class Criterion(Config):
    """When training (at one curriculum level) is done (thesis 3.2.2).

    Attributes:
        max_error: the error rate to reach (1 %).
        max_saturation: the saturation to reach as well (1 % for operators; ``None``: not required).
        min_loss: a loss below this ends training too (1e-6).
        window: batches averaged before the measures are compared with the thresholds.
        patience: steps without a relative improvement of ``min_improvement`` of the windowed loss after
            which the loss counts as stagnant (``None``: never).
        min_improvement: relative improvement that resets the patience.
    """

    max_error: float = 0.01
    max_saturation: float | None = 0.01
    min_loss: float = 1e-6
    window: int = 20
    patience: int | None = 2000
    min_improvement: float = 0.01

    def __post_init__(self) -> None:
        if not 0 <= self.max_error < 1:
            raise ConfigError(f"Criterion.max_error must be in [0, 1), got {self.max_error!r}")
        if self.max_saturation is not None and not 0 <= self.max_saturation < 1:
            raise ConfigError(f"Criterion.max_saturation must be in [0, 1) or None, got {self.max_saturation!r}")
        if not self.min_loss >= 0:
            raise ConfigError(f"Criterion.min_loss must be >= 0, got {self.min_loss!r}")
        if not isinstance(self.window, int) or self.window < 1:
            raise ConfigError(f"Criterion.window must be a positive int, got {self.window!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ConfigError(f"Criterion.patience must be a positive int or None, got {self.patience!r}")
        if not 0 <= self.min_improvement < 1:
            raise ConfigError(f"Criterion.min_improvement must be in [0, 1), got {self.min_improvement!r}")


class CriterionMonitor:
    """Windowed averages of a run's measures, and whether the :class:`Criterion` is met.

    Args:
        criterion: the thresholds.
        saturation: whether the saturation requirement applies (operators yes, a controller no).

    Example:
        >>> monitor = CriterionMonitor(Criterion(window=2, patience=None))
        >>> monitor.add(loss=0.3, error=0.0, saturation=0.0) is None
        True
        >>> monitor.add(loss=0.2, error=0.0, saturation=0.005)
        'criterion'
    """

    def __init__(self, criterion: Criterion, *, saturation: bool = True) -> None:
        self.criterion = criterion
        self.use_saturation = saturation and criterion.max_saturation is not None
        self.reset()

    def reset(self) -> None:
        """Start over (a new curriculum level)."""
        w = self.criterion.window
        self._loss: deque[float] = deque(maxlen=w)
        self._error: deque[float] = deque(maxlen=w)
        self._saturation: deque[float] = deque(maxlen=w)
        self._best = float("inf")
        self._since_best = 0

    def state_dict(self) -> dict[str, Any]:
        """The windows and the stagnation count, for a checkpoint."""
        return {"loss": list(self._loss), "error": list(self._error), "saturation": list(self._saturation),
                "best": self._best, "since_best": self._since_best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        self.reset()
        self._loss.extend(state["loss"])
        self._error.extend(state["error"])
        self._saturation.extend(state["saturation"])
        self._best, self._since_best = state["best"], state["since_best"]

    def means(self) -> dict[str, float]:
        """The windowed means so far."""
        out = {"loss": _mean(self._loss), "error": _mean(self._error)}
        if self._saturation:
            out["saturation"] = _mean(self._saturation)
        return out

    def add(self, *, loss: float, error: float, saturation: float | None = None) -> str | None:
        """Record one batch; returns how the level ends (``"criterion"``, ``"tiny loss"``, ``"stagnant"``)
        or ``None`` while it goes on."""
        c = self.criterion
        self._loss.append(loss)
        self._error.append(error)
        if saturation is not None:
            self._saturation.append(saturation)
        if len(self._loss) < c.window:
            return None
        m = self.means()
        if m["loss"] < c.min_loss:
            return TINY_LOSS
        sat_ok = not self.use_saturation or m.get("saturation", 1.0) <= c.max_saturation
        if m["error"] <= c.max_error and sat_ok:
            return CRITERION
        if m["loss"] < self._best * (1 - c.min_improvement):
            self._best, self._since_best = m["loss"], 0
        else:
            self._since_best += 1
        if c.patience is not None and self._since_best >= c.patience:
            return STAGNANT
        return None


def _mean(values: deque[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
