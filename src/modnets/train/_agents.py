"""Training perception-action agents from execution traces: monolithic end to end, or module by module.

Both regimes learn from expert traces (thesis 3.2.2) under a curriculum over problem size, and stop on the
thesis criteria (:class:`~modnets.train.Criterion`) or on a step or time limit.

- Monolithic (:func:`train_agent_end_to_end`): the whole agent, unrolled over the trace; the target actions
  override the controller's selection and add an auxiliary selection loss, the final representation is
  compared with the target's (as the thesis had to: it does not train without the traces).
- Modular: every operator (:func:`train_operator`) and the control module (:func:`train_control`) alone,
  from the trace's (R(t), R(t+1)) pairs and teacher-forced action sequences, with input noise. The
  independent trainings (:class:`ModuleJobs`) run with :func:`~modnets.train.run_stages`: one after another
  or in parallel processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_ints
from .._config import Config
from ..agents import Agent, ControlModule, ModuleOperator, Representation, Trace
from ..errors import ConfigError
from ..modules import TypedModule
from ._checkpoint import Checkpointer, get_rng_state, set_rng_state
from ._criterion import CRITERION, TINY_LOSS, Criterion, CriterionMonitor, output_terms, pointer_errors
from ._device import resolve_device
from ._loop import LoopState, Stepper, progress_bar
from ._run_dir import RunDir

__all__ = [
    "AgentTrainingConfig",
    "ModuleJob",
    "ModuleJobs",
    "Noise",
    "TraceSource",
    "TrainResult",
    "train_control",
    "train_agent_end_to_end",
    "train_operator",
]

#: How a run ends when it runs out of time or steps before the criterion.
TIME_BUDGET, STEP_LIMIT = "time budget", "step limit"


class TraceSource(Protocol):
    """Expert traces of fresh problems: ``traces(batch_size, max_size, generator)`` with every R(t) recorded."""

    def __call__(self, batch_size: int, max_size: int, generator: torch.Generator) -> Trace: ...


class Noise(Protocol):
    """Input noise on a representation: ``noise(rep, generator=g)`` (e.g. thesis eq. 3.1 / 3.2)."""

    def __call__(self, rep: Representation, *, generator: torch.Generator) -> Representation: ...


@dataclass
class AgentTrainingConfig(Config):
    """Hyper-parameters shared by both regimes (thesis 3.2.2: Adam, learning rate 0.001).

    Attributes:
        batch_size: problems per step (operators: transitions per step).
        lr: Adam learning rate.
        min_size: the curriculum's first level (e.g. shortest list length).
        max_size: its last level; each level trains on problems of sizes ``min_size`` to the level.
        max_steps: stop after this many optimiser steps (``None``: no limit).
        max_seconds: stop after this much training time (``None``: no limit).
        grad_clip: clip the global gradient norm (``None``: no clipping).
        log_every: record the measures every this many steps.
        checkpoint_every: write a checkpoint every this many steps (and at the end) when the training
            function is given a run folder.
        seed: seeds the problems, the noise and the sampling (drawn on the CPU, the same on every device).
        criterion: when a level is done.
        device: where the module trains: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
    """

    batch_size: int = 64
    lr: float = 1e-3
    min_size: int = 2
    max_size: int = 7
    max_steps: int | None = 200_000
    max_seconds: float | None = None
    grad_clip: float | None = 1.0
    log_every: int = 10
    checkpoint_every: int = 1000
    seed: int = 0
    criterion: Criterion = field(default_factory=Criterion)
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_ints(self, "batch_size", "min_size", "max_size", "log_every", "checkpoint_every")
        if self.min_size > self.max_size:
            raise ConfigError(f"AgentTrainingConfig.min_size ({self.min_size}) must be <= max_size ({self.max_size})")
        if not self.lr > 0:
            raise ConfigError(f"AgentTrainingConfig.lr must be > 0, got {self.lr!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ConfigError(f"AgentTrainingConfig.max_steps must be a positive int or None, got {self.max_steps!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(f"AgentTrainingConfig.max_seconds must be > 0 or None, got {self.max_seconds!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"AgentTrainingConfig.grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if isinstance(self.criterion, dict):
            self.criterion = Criterion.from_dict(self.criterion)
        if not isinstance(self.criterion, Criterion):
            raise ConfigError(f"AgentTrainingConfig.criterion must be a Criterion, got {type(self.criterion).__name__}")


@dataclass
class TrainResult:
    """What one training run did.

    Attributes:
        name: what was trained.
        steps: optimiser steps.
        seconds: wall-clock training time (problem generation included).
        stop_reason: ``"criterion"``, ``"tiny loss"`` or ``"stagnant"`` when the last level ended on the
            thesis criteria, ``"time budget"`` or ``"step limit"`` when the run was cut short.
        size: the curriculum level reached (the largest problem size trained on).
        levels: level -> how it ended (a level with no training data for the module ends ``"no data"``).
        history: the logged measures: ``step``, ``seconds``, ``size``, ``loss``, ``error``, ``saturation``
            (operators), ``decision_error`` (control module), ``grad_abs`` (mean absolute gradient per parameter).
        state_dict: the trained weights (filled in by :class:`ModuleJobs`, to come back from other processes).
    """

    name: str
    steps: int
    seconds: float
    stop_reason: str
    size: int
    levels: dict[int, str] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    state_dict: dict[str, Tensor] | None = None

    @property
    def met_criterion(self) -> bool:
        """The last level ended with the error (and saturation) criterion met, or a tiny loss."""
        return self.stop_reason in (CRITERION, TINY_LOSS)

    @property
    def cut_short(self) -> bool:
        """The run stopped on its time budget or step limit, not on the criteria."""
        return self.stop_reason in (TIME_BUDGET, STEP_LIMIT)


class _Terms(NamedTuple):
    loss: Tensor
    error: float
    saturation: float | None
    measures: dict[str, float] | None = None  # logged beside loss and error, not used by the criterion
    monitored: float | None = None  # what the criterion's tiny / stagnant tests watch instead of the loss


#: ``step(size, generator, device) -> _Terms | None``: one batch's loss at a curriculum level (``None``: no data
#: for this module at this level). Problems, sampling and noise draw from the CPU ``generator`` (the same on
#: every device); the tensors the module reads go to ``device``.
StepFn = Callable[[int, torch.Generator, torch.device], "_Terms | None"]


def _train(name: str, module: nn.Module, step_fn: StepFn, config: AgentTrainingConfig, *, saturation: bool,
           run: RunDir | None) -> TrainResult:
    """The curriculum loop shared by every regime, on the shared loop core: levels, criterion, limits,
    checkpoints; the step, guards, clipping, logging and progress bar are the core's."""
    run = run if run is not None else RunDir()
    device = resolve_device(config.device)
    module.to(device)
    stepper = Stepper(module, lr=config.lr, grad_clip=config.grad_clip, device=device, owner=name)
    gen = torch.Generator().manual_seed(config.seed)
    monitor = CriterionMonitor(config.criterion, saturation=saturation)
    size, state = config.min_size, LoopState()
    result = TrainResult(name=name, steps=0, seconds=0.0, stop_reason="", size=size)
    folder = run.checkpoints(name)
    checkpoints = Checkpointer(folder, keep=2) if folder is not None else None
    if checkpoints is not None and not run.resume:
        checkpoints.clear()
    if run.resume and checkpoints is not None and (saved := checkpoints.load_latest()) is not None:
        module.load_state_dict(saved["module"])
        stepper.optimizer.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        set_rng_state(saved["rng"])
        monitor.load_state_dict(saved["monitor"])
        size, state = saved["size"], LoopState.from_state_dict(saved["loop"])
        result = TrainResult(**{**saved["result"], "history": state.history})
        if result.stop_reason:  # it had finished
            module.eval()
            return result
    bar = progress_bar(total=config.max_steps, initial=state.steps, desc=name, enabled=run.progress)
    logger = run.logger(name)
    module.train()

    def save() -> None:
        if checkpoints is not None:
            _account(result, state, size)
            checkpoints.save({"module": module.state_dict(), "optimizer": stepper.optimizer.state_dict(),
                              "generator": gen.get_state(), "rng": get_rng_state(), "monitor": monitor.state_dict(),
                              "size": size, "result": {**asdict(result), "history": []},  # the loop holds it
                              "loop": state.state_dict()}, state.steps)

    try:
        while True:
            terms: _Terms | None = None

            def forward(level: int = size) -> dict[str, Tensor] | None:
                nonlocal terms
                terms = step_fn(level, gen, device)
                return None if terms is None else {"loss": terms.loss}

            log = (state.steps + 1) % config.log_every == 0 or state.steps == 0
            outcome = stepper(forward, state.steps + 1, measure=log)
            if outcome is None or terms is None:  # nothing for this module at this size: the next level
                verdict = "no data"
            else:
                state.steps += 1
                loss = float(terms.loss.detach())
                watched = loss if terms.monitored is None else terms.monitored
                verdict = monitor.add(loss=watched, error=terms.error, saturation=terms.saturation)
                row = {"loss": loss, "error": terms.error}
                if terms.saturation is not None:
                    row["saturation"] = terms.saturation
                row.update(terms.measures or {})
                extra = {"size": size, "grad_abs": outcome.grad_abs} if log else None
                state.record(row, log=log, extra=extra, logger=logger, prefix=name, bar=bar)
                bar.update()
            if verdict is not None:
                result.levels[size] = verdict
                if size == config.max_size:
                    result.stop_reason = verdict if verdict != "no data" else CRITERION
                    break
                size += 1
                monitor.reset()
            if state.out_of_time(config.max_seconds):
                result.stop_reason = TIME_BUDGET
                break
            if config.max_steps is not None and state.steps >= config.max_steps:
                result.stop_reason = STEP_LIMIT
                break
            if terms is not None and state.steps % config.checkpoint_every == 0:
                save()
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    save()
    _account(result, state, size)
    module.eval()
    return result


def _account(result: TrainResult, state: LoopState, size: int) -> None:
    """Copy the loop state's figures into the result."""
    result.steps, result.seconds, result.size, result.history = state.steps, state.elapsed(), size, state.history


def _final_errors(final: Representation, target: Representation) -> Tensor:
    """``(batch,)`` bool: some field of the final representation rounds to the wrong side of 0.5."""
    wrong = torch.zeros(final.batch_size, dtype=torch.bool, device=next(iter(final.values())).device)
    for k in target:
        wrong |= pointer_errors(final[k].flatten(1), target[k].flatten(1))
    return wrong


def train_agent_end_to_end(
    agent: Agent,
    *,
    traces: TraceSource,
    config: AgentTrainingConfig,
    run: RunDir | None = None,
    name: str = "monolithic",
) -> TrainResult:
    """Train a whole agent end to end through its unrolled loop (the monolithic regime).

    Each batch runs the agent from R(0) with the trace's actions overriding the selection. The loss is the
    binary cross-entropy of the final representation against the trace's final one (gradients flow
    through every operator and the digestor at every step) plus the cross-entropy of the controller's
    selections against the trace's actions. An example is wrong when a selection or a value of the final
    representation is wrong.

    Args:
        agent: the agent (trained in place).
        traces: expert traces of fresh problems, representations recorded.
        config: hyper-parameters, curriculum and criterion (the saturation requirement does not apply).
        run: where logs and checkpoints go (``tensorboard/NAME``, ``checkpoints/NAME``, every
            ``config.checkpoint_every`` steps and at the end), whether to resume (a finished run returns its
            result) and to show a progress bar (default ``RunDir()``: nothing written).
        name: the run's name in logs.
    """

    def step(size: int, gen: torch.Generator, device: torch.device) -> _Terms:
        trace = traces(config.batch_size, size, gen).to(device)
        start = trace.representations.map(lambda x: x[:, 0])
        run = agent(start, teacher=trace.actions)
        active = trace.active[:, : run.logits.shape[1]]
        target_actions = trace.actions[:, : run.logits.shape[1]]
        selection = F.cross_entropy(run.logits[active], target_actions[active])
        output = sum(
            F.binary_cross_entropy(run.final[k].clamp(1e-7, 1 - 1e-7), trace.final[k]) for k in trace.final
        )
        with torch.no_grad():
            wrong_choice = ((run.logits.argmax(-1) != target_actions) & active).any(1)
            wrong = wrong_choice | _final_errors(run.final, trace.final)
        return _Terms(output + selection, float(wrong.float().mean()), None)

    return _train(name, agent, step, config, saturation=False, run=run)


def train_operator(
    operator: ModuleOperator,
    *,
    action: int,
    traces: TraceSource,
    config: AgentTrainingConfig,
    noise: Noise | None = None,
    run: RunDir | None = None,
    name: str | None = None,
) -> TrainResult:
    """Train one operator's functional alone, from the trace's applications of its action.

    Each step draws traces of ``batch_size`` fresh problems, takes up to ``batch_size`` of the (R(t),
    R(t+1)) pairs where ``action`` was taken, adds ``noise`` to R(t), and fits the functional's output
    (through the operator's selective input) to the field its selective update writes in R(t+1).
    The loss, error and saturation follow the functional's output type (:func:`output_terms`), so an
    output with a null class learns null vectors where R(t+1) has them.

    Args:
        operator: the operator; its functional must be a :class:`~modnets.modules.TypedModule`.
        action: the operator's action index in the traces.
        traces: expert traces of fresh problems, representations recorded.
        config: hyper-parameters, curriculum and criterion.
        noise: input noise (e.g. ``partial(augment_sorting, level=0.4)``); ``None``: clean inputs.
        run: where logs and checkpoints go (``tensorboard/NAME``, ``checkpoints/NAME``, every
            ``config.checkpoint_every`` steps and at the end), whether to resume (a finished run returns its
            result) and to show a progress bar (default ``RunDir()``: nothing written).
        name: the run's name (default: the operator's).
    """
    if not isinstance(operator, ModuleOperator) or not isinstance(operator.functional, TypedModule):
        raise ConfigError(
            f"train_operator needs a ModuleOperator with a TypedModule functional, got {type(operator).__name__}"
        )
    kind = operator.functional.signature.output

    def step(size: int, gen: torch.Generator, device: torch.device) -> _Terms | None:
        trace = traces(config.batch_size, size, gen)
        before, after = trace.transitions(action)
        if before.batch_size == 0:
            return None
        pick = torch.randperm(before.batch_size, generator=gen)[: config.batch_size]
        before, after = before.rows(pick), after.rows(pick)
        if noise is not None:
            before = noise(before, generator=gen)
        before, after = before.to(device), after.to(device)
        out = operator.apply(operator.select(before))
        terms = output_terms(kind, out, after[operator.writes])
        return _Terms(terms.loss, terms.error, terms.saturation)

    return _train(name or operator.name, operator, step, config, saturation=True, run=run)


def train_control(
    control: ControlModule,
    *,
    traces: TraceSource,
    config: AgentTrainingConfig,
    noise: Noise | None = None,
    run: RunDir | None = None,
    name: str = "control",
) -> TrainResult:
    """Train the control module alone: teacher-forced action sequences of the traces, noisy R(t).

    The digestor reads every R(t) of the trace (with ``noise``), the policy sees the true previous action,
    and the loss is the cross-entropy of its selections. A trace is wrong when any selection is (the
    criterion's error); the history also logs ``decision_error``, the fraction of wrong selections.

    Args:
        control: the control module (trained in place).
        traces: expert traces of fresh problems, representations recorded.
        config: hyper-parameters, curriculum and criterion (the saturation requirement does not apply).
        noise: input noise on R(t); ``None``: clean inputs.
        run: where logs and checkpoints go (``tensorboard/NAME``, ``checkpoints/NAME``, every
            ``config.checkpoint_every`` steps and at the end), whether to resume (a finished run returns its
            result) and to show a progress bar (default ``RunDir()``: nothing written).
        name: the run's name in logs.
    """

    def step(size: int, gen: torch.Generator, device: torch.device) -> _Terms:
        trace = traces(config.batch_size, size, gen)
        steps = trace.actions.shape[1]
        reps = trace.representations.map(lambda x: x[:, :steps])  # R(0) ... R(T-1)
        if noise is not None:
            reps = noise(reps, generator=gen)
        trace, reps = trace.to(device), reps.to(device)
        active = trace.active
        logits = control.sequence(reps, trace.previous, mask=active)  # (B, T, A)
        loss = F.cross_entropy(logits[active], trace.actions[active])
        with torch.no_grad():
            wrong_steps = (logits.argmax(-1) != trace.actions) & active
            decision_error = float(wrong_steps.sum() / active.sum().clamp_min(1))
        return _Terms(loss, float(wrong_steps.any(1).float().mean()), None, {"decision_error": decision_error})

    return _train(name, control, step, config, saturation=False, run=run)


class ModuleJob(NamedTuple):
    """One independent module training.

    Attributes:
        name: the module's name.
        module: the module (trained in place, or in a worker process and copied back).
        train: ``train(module) -> TrainResult``, e.g. ``partial(train_operator, action=0, traces=..., ...)``.
    """

    name: str
    module: nn.Module
    train: Callable[[nn.Module], TrainResult]


class ModuleJobs:
    """Independent module trainings as one job of :func:`~modnets.train.run_stages`.

    ``jobs(name)`` trains that module with its :class:`ModuleJob` and returns the :class:`TrainResult` with
    the trained weights in ``state_dict``, so that they come back from a worker process;
    ``jobs.collect(name, result)`` loads them into the module (where the training ran in this process, the
    module already holds them). Every module reads only its own traces, so they form one stage.

    Args:
        jobs: the trainings, with distinct names.

    Raises:
        ConfigError: no jobs, or two with the same name.

    Example:
        >>> from functools import partial
        >>> from modnets.data import sorting_traces
        >>> from modnets.models import sorting_agent
        >>> from modnets.train import run_stages
        >>> agent = sorting_agent(hidden=8)
        >>> config = AgentTrainingConfig(batch_size=4, max_size=3, max_steps=2)
        >>> jobs = ModuleJobs([ModuleJob("control", agent.control, partial(
        ...     train_control, traces=sorting_traces, config=config, run=RunDir(progress=False)))])
        >>> run = run_stages([jobs.names], jobs, collect=jobs.collect, progress=False)
        >>> run.results["control"].steps
        2
    """

    def __init__(self, jobs: Sequence[ModuleJob]) -> None:
        names = [j.name for j in jobs]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"ModuleJobs needs jobs with distinct names, got {names}")
        self.jobs = {j.name: j for j in jobs}

    @property
    def names(self) -> tuple[str, ...]:
        """The modules' names, in the order of the jobs."""
        return tuple(self.jobs)

    def __call__(self, name: str) -> TrainResult:
        job = self.jobs[name]
        result = job.train(job.module)
        result.state_dict = {k: v.detach().clone() for k, v in job.module.state_dict().items()}
        return result

    def collect(self, name: str, result: TrainResult) -> None:
        """Load the weights a job returned into its module."""
        assert result.state_dict is not None, "a result of ModuleJobs carries its weights"
        self.jobs[name].module.load_state_dict(result.state_dict)
