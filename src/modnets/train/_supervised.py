"""``fit``: any :class:`~modnets.train.Objective` over a data set, by epochs, on any device, data-parallel
inside a process group, optionally validated after every epoch and stopped early; ``predict`` /
``predict_routed``: batched evaluation over a whole data set."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from .._checks import check_ints
from .._config import Config
from ..errors import ConfigError
from ..routing import RoutedOutput, RouteResult
from ._checkpoint import Checkpointer, get_rng_state, set_rng_state
from ._device import PRECISIONS, check_precision, device_of, resolve_device, to_device
from ._distributed import all_any, all_gather_objects, all_mean, barrier, broadcast_object, wire_device, world
from ._loop import NONFINITE, LoopState, Stepper, progress_bar
from ._objective import Batch, Objective, check_batch, check_objective
from ._run_dir import RunDir

__all__ = ["FitConfig", "FitResult", "fit", "predict", "predict_routed"]


@dataclass
class FitConfig(Config):
    """Hyper-parameters of :func:`fit`.

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per step.
        lr: Adam learning rate.
        warmup_steps: the learning rate rises linearly from ``lr / warmup_steps`` to ``lr`` over the first this
            many steps (0: no warm-up).
        weight_decay: Adam weight decay.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        patience: with a validation set (``fit(valid=...)``), stop when its loss has not improved for this many
            epochs (``None``: train every epoch; the best epoch's parameters are kept either way).
        seed: seeds the shuffling (epoch e is shuffled by a generator seeded with (seed, e), so that a
            resumed run sees the same batches).
        max_seconds: stop after this much training time (``None``: no limit).
        log_every: log scalars every this many steps.
        checkpoint_every: write a checkpoint every this many steps (and at the end) when :func:`fit` is
            given a ``checkpoint_dir``.
        keep_checkpoints: how many checkpoints to keep.
        on_nonfinite: ``"raise"`` (stop with :class:`~modnets.errors.NumericalError` on a NaN or infinite input,
            loss or gradient) or ``"skip"`` (drop that batch's update and count it).
        device: where to train: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (the objective
            and every batch are moved there; checked when :func:`fit` starts).
        precision: ``"fp32"``, or ``"bf16"`` (bfloat16 autocast of the forward pass, where the device has it).
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0
    patience: int | None = None
    seed: int = 0
    max_seconds: float | None = None
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    on_nonfinite: str = "raise"
    device: str = "cpu"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_ints(self, "epochs", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints")
        check_ints(self, "warmup_steps", minimum=0)
        if self.patience is not None:
            check_ints(self, "patience")
        if not self.lr > 0:
            raise ConfigError(f"FitConfig.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"FitConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"FitConfig.grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(f"FitConfig.max_seconds must be > 0 or None, got {self.max_seconds!r}")
        if self.on_nonfinite not in NONFINITE:
            raise ConfigError(f"FitConfig.on_nonfinite must be one of {NONFINITE}, got {self.on_nonfinite!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"FitConfig.device must be a device name such as 'cpu' or 'cuda:0', got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"FitConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        steps: optimiser steps taken (skipped batches included), over the whole run when resumed.
        seconds: wall-clock training time (data loading and validation included), over the whole run.
        history: one dict of logged scalars per logged step (with ``step`` and ``seconds``).
        skipped: batches whose update was dropped for a non-finite loss or gradient (``on_nonfinite="skip"``).
        resumed_from: the step of the checkpoint the run resumed from, or ``None``.
        out_of_time: whether ``max_seconds`` ended the run before its last epoch.
        valid_loss: the validation loss after each epoch (empty without a validation set; NaN for the epochs
            of a run resumed from a checkpoint written without one, but the last of them).
        best_epoch: the epoch (from 1) of the lowest validation loss, whose parameters the objective ends with
            (``None`` without a validation set); fewer ``valid_loss`` entries than epochs: the patience (or the
            time budget) ran out.
    """

    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    skipped: int = 0
    resumed_from: int | None = None
    out_of_time: bool = False
    valid_loss: list[float] = field(default_factory=list)
    best_epoch: int | None = None


@dataclass
class _EarlyStopping:
    """A fit's validation record: the loss after each epoch, the best epoch (from 1) and its parameters and
    buffers; ``stopped`` once ``patience`` epochs have passed without an improvement."""

    patience: int | None
    losses: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_state: dict[str, Tensor] | None = None

    @property
    def stopped(self) -> bool:
        return (self.patience is not None and self.best_epoch is not None
                and len(self.losses) - self.best_epoch >= self.patience)

    def update(self, loss: float, objective: nn.Module) -> None:
        best = math.nan if self.best_epoch is None else self.losses[self.best_epoch - 1]
        self.losses.append(loss)
        if self.best_epoch is None or (not math.isnan(loss) and (math.isnan(best) or loss < best)):
            self.best_epoch = len(self.losses)
            self.best_state = {k: v.detach().clone() for k, v in objective.state_dict().items()}

    def restore_best(self, objective: nn.Module) -> None:
        if self.best_state is not None and self.best_epoch != len(self.losses):
            objective.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {"losses": list(self.losses), "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: Mapping) -> None:
        self.losses, self.best_epoch, self.best_state = list(state["losses"]), state["best_epoch"], state["best_state"]


class _EpochBatches(Sampler[list[int]]):
    """The batches of one epoch: a shuffle of range(n) fixed by (seed, epoch), cut into global batches of
    ``batch_size`` from batch ``start`` on; each of the ``size`` processes takes every ``size``-th example
    of each global batch, from its ``rank`` (one process takes them all)."""

    def __init__(self, n: int, batch_size: int, *, seed: int, epoch: int, start: int, steps: int,
                 rank: int = 0, size: int = 1):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        self.batches = [order[i * batch_size:(i + 1) * batch_size][rank::size] for i in range(start, steps)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Forward(nn.Module):
    """The objective's loss as a module's forward, so that DistributedDataParallel can wrap it."""

    def __init__(self, objective: nn.Module):
        super().__init__()
        self.objective = objective

    def forward(self, batch: Batch) -> Mapping[str, Tensor]:
        return self.objective.loss(batch)


def fit(
    objective: Objective,
    dataset: Dataset,
    *,
    config: FitConfig,
    collate: Callable[[list], Batch],
    run: RunDir | None = None,
    name: str = "train",
    device: str | None = None,
    valid: Dataset | None = None,
) -> FitResult:
    """Train an :class:`~modnets.train.Objective` on ``dataset`` with Adam, minimising its ``"loss"`` term.

    The objective and every batch go to ``config.device`` (the objective stays there). The batch keys the
    objective reads are checked on the first batch.

    With a validation set, the objective's mean ``"loss"`` over it is measured after every epoch (in eval mode,
    without touching the random generators; logged as ``NAME/valid_loss``), training stops once
    ``config.patience`` epochs pass without a lower one, and the objective ends with the parameters and buffers
    of the epoch whose validation loss was lowest.

    In a run folder (``run=RunDir(path)``), scalars go to ``tensorboard/NAME`` and the objective's and the
    optimiser's state, the data position, the random generators' states and the loop state are saved
    atomically to ``checkpoints/NAME`` every ``config.checkpoint_every`` steps and at the end;
    ``RunDir(path, resume=True)`` continues from the newest readable checkpoint there (written on any device),
    and the resumed run ends with the same parameters, bit for bit, as an uninterrupted one (on CPU, without
    ``max_seconds``). Without ``resume``, older checkpoints of the name are deleted first.

    Inside a ``torch.distributed`` process group (``torchrun``, or ``modnets run NAME --nproc N``), ``fit``
    trains data-parallel with ``DistributedDataParallel``: every process takes an equal share of each batch
    (``config.batch_size`` is the global batch and must be divisible by the number of processes), gradients
    are averaged so that a step is the step on the whole batch, and logged scalars are averaged over the
    processes. Process 0 writes the checkpoints (with every process's random state) and the logs.

    Args:
        objective: what is trained (its parameters) and how (its ``loss``); its buffers (an EM table, a
            moving baseline) are checkpointed with it.
        dataset: training examples.
        config: hyper-parameters.
        collate: turns a list of examples into a batch.
        run: where logs and checkpoints go, whether to resume and to show a progress bar (default
            ``RunDir()``: nothing written, a progress bar).
        name: the training's name: its log and checkpoint folders, its progress-bar label and logging prefix.
        device: where to train, in place of ``config.device`` (the same names: "cpu", "cuda:1", "auto", ...).
        valid: validation examples (the same keys as ``dataset``'s), or ``None``.

    Returns:
        steps, seconds, the logged history, the skipped batches, the step resumed from, whether the time
        budget ended the run, the validation losses and the best epoch.

    Raises:
        ConfigError: a bare model (the message names the objective to wrap it in), a model without trainable
            parameters, a batch missing a key the objective reads, a device this machine lacks, or
            ``config.patience`` without a validation set.
        NumericalError: a NaN or infinite input, loss term or gradient (``on_nonfinite="raise"``); the message
            names the step, the module and the quantity, and the last checkpoint is left as it was.
    """
    check_objective(objective)
    if config.patience is not None and valid is None:
        raise ConfigError("FitConfig.patience stops on the validation loss: give fit a validation set (valid=...)")
    run = run if run is not None else RunDir()
    rank, size = world()
    if config.batch_size % size:
        raise ConfigError(f"FitConfig.batch_size ({config.batch_size}) must be divisible by the number of "
                          f"processes ({size}): each takes an equal share of every batch")
    dev = resolve_device(config.device if device is None else device)
    check_precision(config.precision, dev)
    objective.to(dev)
    stepper = Stepper(objective, lr=config.lr, weight_decay=config.weight_decay, grad_clip=config.grad_clip,
                      on_nonfinite=config.on_nonfinite, device=dev, precision=config.precision, agree=all_any)
    per_epoch = _steps_per_epoch(len(dataset), config.batch_size, size)
    total = config.epochs * per_epoch
    folder = run.checkpoints(name)
    checkpoints = Checkpointer(folder, keep=config.keep_checkpoints) if folder is not None else None
    watch = _EarlyStopping(config.patience)
    state = _start(objective, stepper, checkpoints, watch, resume=run.resume, rank=rank, size=size)
    resumed_from = state.steps if run.resume and (state.steps or state.history) else None
    # processes start from rank 0's parameters and buffers and average their gradients; buffers that must agree
    # (EM tables, baselines) synchronise themselves, the rest stay each process's own
    loss_fn = objective.loss if size == 1 else DistributedDataParallel(
        _Forward(objective), find_unused_parameters=True, forward_sync_buffers=False)
    objective.train()
    bar = progress_bar(total=total, initial=state.steps, desc=name, enabled=run.progress and rank == 0)
    logger = run.logger(name) if rank == 0 else None
    save = _saver(objective, stepper, checkpoints, state, watch, config, rank=rank)
    out_of_time = all_any(state.out_of_time(config.max_seconds))  # a resumed run may have spent its budget

    def validate() -> None:  # every finished epoch once, also one a checkpoint ended before its validation
        if valid is not None and len(watch.losses) < state.steps // per_epoch:
            # epochs a checkpoint written without a validation set ended: not measured
            watch.losses.extend([math.nan] * (state.steps // per_epoch - 1 - len(watch.losses)))
            loss = float(all_mean(_mean_loss(objective, valid, collate, config.batch_size, dev)))
            watch.update(loss, objective)
            if logger is not None:
                logger.log(state.steps, **{f"{name}/valid_loss": loss})

    try:
        while True:
            validate()
            if state.steps >= total or out_of_time or watch.stopped:
                break
            epoch, position = divmod(state.steps, per_epoch)
            batches = _EpochBatches(len(dataset), config.batch_size, seed=config.seed, epoch=epoch, start=position,
                                    steps=per_epoch, rank=rank, size=size)
            # the loader's own generator: creating it must not draw from the global one (exact resume)
            loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                generator=torch.Generator().manual_seed(config.seed))
            for batch, rows in zip(loader, batches.batches, strict=True):
                if state.steps == 0 or state.steps == resumed_from:
                    check_batch(objective, batch)
                batch = to_device(batch, dev)
                if config.warmup_steps:
                    stepper.set_lr(config.lr * min(1.0, (state.steps + 1) / config.warmup_steps))
                outcome = stepper(lambda b=batch: loss_fn(b), state.steps + 1, scale=_share(len(rows), size))
                if outcome is None:
                    raise ConfigError(f"{type(objective).__name__}.loss returned None; it must return the named loss "
                                      "terms, a dict with 'loss'")
                state.steps += 1
                state.skipped += outcome.skipped
                if state.steps % config.log_every == 0 or state.steps == total:  # a device sync: only here
                    terms = {k: float(all_mean(v)) for k, v in (outcome.terms or {}).items()}
                    state.record(terms, log=True, running=not outcome.skipped, logger=logger, prefix=name, bar=bar)
                bar.update()
                if state.steps % config.checkpoint_every == 0 and state.steps < total:
                    save()
                out_of_time = all_any(state.out_of_time(config.max_seconds))
                if out_of_time:
                    break
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    watch.restore_best(objective)
    save()
    objective.eval()
    return FitResult(steps=state.steps, seconds=state.elapsed(), history=state.history, skipped=state.skipped,
                     resumed_from=resumed_from, out_of_time=out_of_time, valid_loss=list(watch.losses),
                     best_epoch=watch.best_epoch)


@torch.no_grad()
def _mean_loss(objective: Objective, dataset: Dataset, collate: Callable[[list], Batch], batch_size: int,
               device: torch.device) -> Tensor:
    """The objective's ``"loss"`` averaged over every example of ``dataset``, in eval mode; the random
    generators are left as they were, so that validating does not change the training that follows."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        objective.eval()
        try:
            total = torch.zeros((), device=device)
            for start in range(0, len(dataset), batch_size):
                rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                total += objective.loss(to_device(collate(rows), device))["loss"].detach().float() * len(rows)
        finally:
            objective.train()
    return total / len(dataset)


def _steps_per_epoch(n: int, batch_size: int, processes: int) -> int:
    per_epoch = math.ceil(n / batch_size)
    if n - (per_epoch - 1) * batch_size < processes:
        per_epoch -= 1  # a last batch too small to give every process an example is left out
    return per_epoch


def _share(rows: int, processes: int) -> float:
    """The weight of a process's mean over its share of a batch, so that the average over processes is the
    mean over the whole batch."""
    if processes == 1:
        return 1.0
    whole = round(float(all_mean(torch.tensor(float(rows), device=wire_device()))) * processes)
    return rows * processes / whole


def _start(objective: nn.Module, stepper: Stepper, checkpoints: Checkpointer | None, watch: _EarlyStopping, *,
           resume: bool, rank: int, size: int) -> LoopState:
    """The loop state to start from: a checkpoint's (resume; ``watch`` takes its validation record), else a
    fresh one (older checkpoints cleared)."""
    if checkpoints is not None and not resume and rank == 0:
        checkpoints.clear()  # a fresh run starts over; older checkpoints would outrank its own
    barrier()
    # process 0 reads the checkpoint and hands it to the others
    saved = broadcast_object(checkpoints.load_latest() if resume and checkpoints is not None and rank == 0 else None)
    if saved is None:
        if rank > 0:  # every process samples its own routings and noise
            torch.manual_seed((torch.initial_seed() * 1_000_003 + rank) % 2**63)
        return LoopState()
    objective.load_state_dict(saved["model"])
    stepper.optimizer.load_state_dict(saved["optimizer"])
    rng = saved.get("rng_ranks", [saved["rng"]])
    set_rng_state(rng[rank] if len(rng) == size else saved["rng"])
    if "early_stopping" in saved:
        watch.load_state_dict(saved["early_stopping"])
    return LoopState.from_state_dict(saved)


def _saver(objective: nn.Module, stepper: Stepper, checkpoints: Checkpointer | None, state: LoopState,
           watch: _EarlyStopping, config: FitConfig, *, rank: int) -> Callable[[], None]:
    def save() -> None:
        if checkpoints is None:
            return
        rng = all_gather_objects(get_rng_state())
        if rank == 0:
            checkpoints.save({"model": objective.state_dict(), "optimizer": stepper.optimizer.state_dict(),
                              "rng": rng[0], "rng_ranks": rng, **state.state_dict(), "config": config.to_dict(),
                              "early_stopping": watch.state_dict()},
                             state.steps)
        barrier()

    return save


@torch.no_grad()
def predict(
    objective: Objective, dataset: Dataset, *, collate: Callable[[list], Batch], batch_size: int = 256
) -> Tensor:
    """``(len(dataset), ...)`` the objective's ``predict(batch)`` over a whole data set, in order, in eval mode,
    on the objective's device; the result is on the CPU.

    Raises:
        ConfigError: ``objective`` has no ``predict(batch)``.
    """
    if not callable(getattr(objective, "predict", None)):
        raise ConfigError(f"predict needs an Objective (with predict(batch)), got {type(objective).__name__}")
    device = device_of(objective)
    was_training = objective.training
    objective.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    try:
        return torch.cat([objective.predict(to_device(batch, device)).cpu() for batch in loader])
    finally:
        objective.train(was_training)


@torch.no_grad()
def predict_routed(
    model: nn.Module,
    dataset: Dataset,
    *,
    collate: Callable[[list], Batch],
    mode: str | None = "argmax",
    batch_size: int = 512,
) -> RoutedOutput:
    """A routed model's outputs and routings over a whole data set, in order, in eval mode.

    Args:
        model: a routed model (:class:`~modnets.routing.ModularStack` call signature); batches give ``"x"``
            and, optionally, ``"task"``.
        dataset: the examples.
        collate: turns a list of examples into a batch.
        mode: routing mode (``"argmax"``: each router's most probable modules; ``None``: the routers' own).
        batch_size: examples per forward pass.

    Returns:
        output (N, ...) and the route with choice (N, L, k), log_prob (N,), probs (N, L, M) (``None`` for a
        model without routing).
    """
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    device = device_of(model)
    outs = [model(b["x"].to(device), task=None if b.get("task") is None else b["task"].to(device), mode=mode)
            for b in loader]
    model.train(was_training)
    route = None
    if outs[0].route is not None:
        r = [o.route for o in outs]
        weights = None if r[0].weights is None else torch.cat([x.weights for x in r])
        route = RouteResult(torch.cat([x.choice for x in r]), torch.cat([x.log_prob for x in r]),
                            torch.cat([x.probs for x in r]), weights)
    return RoutedOutput(torch.cat([o.output for o in outs]), route)
