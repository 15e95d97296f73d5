"""Supervised training with given layouts (programs from the data), and batched evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .._checks import check_ints
from ..errors import ConfigError, InterfaceError, NumericalError
from ..routing import RoutedOutput, RouteResult
from ._checkpoint import Checkpointer, get_rng_state, set_rng_state
from ._distributed import all_any, all_gather_objects, all_mean, barrier, broadcast_object, world
from ._guards import nonfinite_grad, nonfinite_loss
from ._logging import RunLogger

__all__ = ["FitConfig", "FitResult", "fit", "predict", "predict_routed"]

Batch = Mapping[str, Any]
LossFn = Callable[[Batch], Mapping[str, Tensor]]


@dataclass
class FitConfig:
    """Hyper-parameters of :func:`fit`.

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per step.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        seed: seeds the shuffling (epoch e is shuffled by a generator seeded with (seed, e), so that a
            resumed run sees the same batches).
        max_seconds: stop after this much training time (``None``: no limit).
        log_every: log scalars every this many steps.
        checkpoint_every: write a checkpoint every this many steps (and at the end) when :func:`fit` is
            given a ``checkpoint_dir``.
        keep_checkpoints: how many checkpoints to keep.
        on_nonfinite: ``"raise"`` (stop with :class:`~modnets.errors.NumericalError` on a NaN or infinite loss
            or gradient) or ``"skip"`` (drop that batch's update and count it).
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0
    seed: int = 0
    max_seconds: float | None = None
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    on_nonfinite: str = "raise"

    def __post_init__(self) -> None:
        check_ints(self, "epochs", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints")
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


NONFINITE = ("raise", "skip")


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        steps: optimiser steps taken (skipped batches included), over the whole run when resumed.
        seconds: wall-clock training time (data loading included, evaluation excluded), over the whole run.
        history: one dict of logged scalars per logged step (with ``step`` and ``seconds``).
        skipped: batches whose update was dropped for a non-finite loss or gradient (``on_nonfinite="skip"``).
        resumed_from: the step of the checkpoint the run resumed from, or ``None``.
    """

    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    skipped: int = 0
    resumed_from: int | None = None


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


class _LossModule(nn.Module):
    """The loss as a module's forward, so that DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch) -> Mapping[str, Tensor]:
        return self.loss_fn(batch)


def fit(
    model: nn.Module,
    dataset: Dataset,
    *,
    config: FitConfig,
    collate: Callable[[list], Batch],
    loss: LossFn | None = None,
    logger: RunLogger | None = None,
    progress: bool = True,
    desc: str = "train",
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> FitResult:
    """Train ``model`` on ``dataset`` with Adam, minimising the ``loss`` term of ``loss(batch)``.

    With a ``checkpoint_dir``, the model's and the optimiser's state, the data position, the random
    generators' states and the history are saved atomically every ``config.checkpoint_every`` steps and at
    the end; ``resume=True`` continues from the newest readable checkpoint there, and the resumed run ends
    with the same parameters, bit for bit, as an uninterrupted one (on CPU, without ``max_seconds``).

    Inside a ``torch.distributed`` process group (``torchrun``, or ``modnets run NAME --nproc N``), ``fit``
    trains data-parallel with ``DistributedDataParallel``: every process takes an equal share of each
    batch (``config.batch_size`` is the global batch and must be divisible by the number of processes), the
    gradients are averaged so that a step is the step on the whole batch, and the logged scalars are
    averaged over the processes. Process 0 writes the checkpoints (with every process's random state) and
    the logs.

    Args:
        model: the model; its ``loss(batch)`` is used when ``loss`` is not given. Buffers (an EM incumbent
            table, a moving baseline, ...) are part of its state and are checkpointed with it.
        dataset: training examples.
        config: hyper-parameters.
        collate: turns a list of examples into a batch.
        loss: returns named terms; ``"loss"`` is minimised, every term is logged.
        logger: where scalars go (JSONL + TensorBoard).
        progress: show a progress bar.
        desc: progress-bar label and logging prefix.
        checkpoint_dir: where checkpoints go (``None``: no checkpoints). Without ``resume``, checkpoints already
            there are deleted first.
        resume: continue from the newest checkpoint in ``checkpoint_dir`` (a fresh start when there is none).

    Returns:
        steps, seconds, the logged history, the skipped batches and the step resumed from.

    Raises:
        ConfigError: a model without trainable parameters, or ``resume`` without ``checkpoint_dir``.
        NumericalError: a NaN or infinite loss term or gradient (``on_nonfinite="raise"``); the message names
            the step, the module and the quantity, and the last checkpoint is left as it was.
    """
    loss_fn: LossFn = loss if loss is not None else model.loss  # type: ignore[assignment]
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters")
    if resume and checkpoint_dir is None:
        raise ConfigError("resume=True needs the checkpoint_dir to resume from")
    rank, size = world()
    if config.batch_size % size:
        raise ConfigError(f"FitConfig.batch_size ({config.batch_size}) must be divisible by the number of "
                          f"processes ({size}): each takes an equal share of every batch")
    names = {p: n for n, p in model.named_parameters()}
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(dataset) / config.batch_size)
    if len(dataset) - (per_epoch - 1) * config.batch_size < size:
        per_epoch -= 1  # a last batch too small to give every process an example is left out
    total = config.epochs * per_epoch
    checkpoints = Checkpointer(checkpoint_dir, keep=config.keep_checkpoints) if checkpoint_dir is not None else None
    result = FitResult(steps=0, seconds=0.0)
    running: dict[str, float] = {}
    if checkpoints is not None and not resume and rank == 0:
        checkpoints.clear()  # a fresh run starts over; older checkpoints would outrank its own
    barrier()
    # process 0 reads the checkpoint and hands it to the others
    state = broadcast_object(checkpoints.load_latest() if resume and checkpoints is not None and rank == 0 else None)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng = state.get("rng_ranks", [state["rng"]])
        set_rng_state(rng[rank] if len(rng) == size else state["rng"])
        result = FitResult(steps=state["steps"], seconds=state["seconds"], history=state["history"],
                           skipped=state["skipped"], resumed_from=state["steps"])
        running = state["running"]
    elif rank > 0:  # every process samples its own routings and noise
        torch.manual_seed((torch.initial_seed() * 1_000_003 + rank) % 2**63)
    # processes start from rank 0's parameters and buffers and average their gradients; buffers that must agree
    # (EM tables, baselines) synchronise themselves, the rest stay each process's own
    step_fn = loss_fn if size == 1 else DistributedDataParallel(
        _LossModule(model, loss_fn), find_unused_parameters=True, forward_sync_buffers=False)
    model.train()
    start = time.perf_counter() - result.seconds
    bar = tqdm(total=total, initial=result.steps, desc=desc, disable=not progress or rank > 0, leave=False,
               dynamic_ncols=True)

    def save() -> None:
        if checkpoints is None:
            return
        rng = all_gather_objects(get_rng_state())
        if rank == 0:
            checkpoints.save({
                "model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng[0], "rng_ranks": rng,
                "steps": result.steps, "seconds": time.perf_counter() - start, "history": result.history,
                "skipped": result.skipped, "running": running, "config": config.to_dict(),
            }, result.steps)
        barrier()

    try:
        while result.steps < total:
            epoch, position = divmod(result.steps, per_epoch)
            batches = _EpochBatches(len(dataset), config.batch_size, seed=config.seed, epoch=epoch, start=position,
                                    steps=per_epoch, rank=rank, size=size)
            # the loader's own generator: creating it must not draw from the global one (exact resume)
            loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                generator=torch.Generator().manual_seed(config.seed))
            for batch, rows in zip(loader, batches.batches, strict=True):
                try:
                    terms = step_fn(batch)
                except InterfaceError as e:  # interface checking on: a NaN or inf between modules
                    if not e.nonfinite:
                        raise
                    raise NumericalError(f"step {result.steps + 1}: {e}", step=result.steps + 1,
                                         module=e.where or type(model).__name__, quantity="interface value") from e
                opt.zero_grad(set_to_none=True)
                bad = nonfinite_loss(terms, result.steps + 1, type(model).__name__)
                if all_any(bad is not None) and bad is None:
                    bad = NumericalError(f"step {result.steps + 1}: a loss term is not finite in another process",
                                         step=result.steps + 1, module=type(model).__name__, quantity="loss")
                if bad is None:
                    # each process's mean over its share, weighted so that the average over processes is
                    # the mean over the whole batch
                    whole = len(rows) if size == 1 else round(float(all_mean(torch.tensor(float(len(rows))))) * size)
                    share = len(rows) * size / whole
                    (terms["loss"] * share).backward()
                    bad = nonfinite_grad(params, names, result.steps + 1)
                if bad is not None and config.on_nonfinite == "raise":
                    raise bad
                if bad is None:
                    if config.grad_clip is not None:
                        nn.utils.clip_grad_norm_(params, config.grad_clip)
                    opt.step()
                else:
                    result.skipped += 1
                    opt.zero_grad(set_to_none=True)
                result.steps += 1
                terms = {k: v.detach() for k, v in terms.items()}
                if bad is None:
                    for k, v in terms.items():
                        running[k] = 0.9 * running.get(k, float(v)) + 0.1 * float(v)
                if result.steps % config.log_every == 0 or result.steps == total:
                    elapsed = time.perf_counter() - start
                    row = {"step": result.steps, "seconds": elapsed,
                           **{k: float(all_mean(v)) for k, v in terms.items()}}
                    if result.skipped:
                        row["skipped"] = result.skipped
                    result.history.append(row)
                    if logger is not None and rank == 0:
                        logger.log(result.steps, **{f"{desc}/{k}": v for k, v in row.items() if k != "step"})
                    bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()}, refresh=False)
                bar.update()
                if result.steps % config.checkpoint_every == 0 and result.steps < total:
                    save()
                out_of_time = config.max_seconds is not None and time.perf_counter() - start > config.max_seconds
                if all_any(out_of_time):
                    raise _Budget
    except _Budget:
        pass
    finally:
        bar.close()
    result.seconds = time.perf_counter() - start
    save()
    model.eval()
    return result


class _Budget(Exception):
    """Internal: the time budget ran out."""


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, *, collate: Callable[[list], Batch], batch_size: int = 256
) -> Tensor:
    """``(len(dataset),)`` the model's ``predict(batch)`` over a whole data set, in order, in eval mode."""
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    out = torch.cat([model.predict(batch) for batch in loader])
    model.train(was_training)
    return out


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
    outs = [model(b["x"], task=b.get("task"), mode=mode) for b in loader]
    model.train(was_training)
    route = None
    if outs[0].route is not None:
        r = [o.route for o in outs]
        weights = None if r[0].weights is None else torch.cat([x.weights for x in r])
        route = RouteResult(torch.cat([x.choice for x in r]), torch.cat([x.log_prob for x in r]),
                            torch.cat([x.probs for x in r]), weights)
    return RoutedOutput(torch.cat([o.output for o in outs]), route)
