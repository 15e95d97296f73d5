"""Supervised training with given layouts (programs from the data), and batched evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..routing import RoutedOutput, RouteResult
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
        seed: seeds the shuffling.
        max_seconds: stop after this much training time (``None``: no limit).
        log_every: log scalars every this many steps.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0
    seed: int = 0
    max_seconds: float | None = None
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"FitConfig.{name} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"FitConfig.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"FitConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"FitConfig.grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(f"FitConfig.max_seconds must be > 0 or None, got {self.max_seconds!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        steps: optimiser steps taken.
        seconds: wall-clock training time (data loading included, evaluation excluded).
        history: one dict of logged scalars per logged step (with ``step`` and ``seconds``).
    """

    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


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
) -> FitResult:
    """Train ``model`` on ``dataset`` with Adam, minimising the ``loss`` term of ``loss(batch)``.

    Args:
        model: the model; its ``loss(batch)`` is used when ``loss`` is not given.
        dataset: training examples.
        config: hyper-parameters.
        collate: turns a list of examples into a batch.
        loss: returns named terms; ``"loss"`` is minimised, every term is logged.
        logger: where scalars go (JSONL + TensorBoard).
        progress: show a progress bar.
        desc: progress-bar label and logging prefix.

    Returns:
        steps, seconds and the logged history.
    """
    loss_fn: LossFn = loss if loss is not None else model.loss  # type: ignore[assignment]
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters")
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, collate_fn=collate, generator=gen)
    total = config.epochs * len(loader)
    model.train()
    result = FitResult(steps=0, seconds=0.0)
    start = time.perf_counter()
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    running: dict[str, float] = {}
    try:
        for _epoch in range(config.epochs):
            for batch in loader:
                terms = loss_fn(batch)
                opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, config.grad_clip)
                opt.step()
                result.steps += 1
                terms = {k: v.detach() for k, v in terms.items()}
                for k, v in terms.items():
                    running[k] = 0.9 * running.get(k, float(v)) + 0.1 * float(v)
                if result.steps % config.log_every == 0 or result.steps == total:
                    elapsed = time.perf_counter() - start
                    row = {"step": result.steps, "seconds": elapsed, **{k: float(v) for k, v in terms.items()}}
                    result.history.append(row)
                    if logger is not None:
                        logger.log(result.steps, **{f"{desc}/{k}": float(v) for k, v in terms.items()})
                    bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()}, refresh=False)
                bar.update()
                if config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
                    raise _Budget
    except _Budget:
        pass
    finally:
        bar.close()
    result.seconds = time.perf_counter() - start
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
