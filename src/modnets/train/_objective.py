"""The contract every training algorithm meets: an :class:`Objective`.

An objective is an ``nn.Module`` that owns the model it trains (its parameters are the ones
:func:`~modnets.train.fit` optimises, its buffers — an EM table, a moving baseline — are checkpointed with
them) and turns a batch into named loss terms:

- ``loss(batch) -> dict[str, Tensor]``: ``"loss"`` is minimised, every other term is logged;
- ``predict(batch) -> Tensor``: the model's prediction under the objective's evaluation rule;
- ``batch_keys``: ``{key: meaning}`` of the batch entries it needs, checked on the first batch by
  :func:`check_batch`, so that a batch with ``"label"`` where ``"y"`` is read fails at once with a message
  that names the key and says what it holds.

A model is not an objective: ``fit(model, ...)`` on a bare model raises a :class:`~modnets.errors.ConfigError`
that names the objective to wrap it in (:class:`~modnets.train.Classification` for a classifier,
:class:`~modnets.train.Reinforce`, :class:`~modnets.train.TopKBuffer` or :class:`~modnets.train.EndToEnd`
for a routed model, :class:`~modnets.train.WinnerTakeAll` for an IMN).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from ..errors import ConfigError, ShapeError

__all__ = ["Batch", "Objective", "check_batch", "check_input", "check_objective", "input_fits"]

Batch = Mapping[str, Any]


@runtime_checkable
class Objective(Protocol):
    """A training algorithm for :func:`~modnets.train.fit`: an ``nn.Module`` with ``loss``, ``predict`` and
    ``batch_keys`` (see the module docstring)."""

    @property
    def batch_keys(self) -> Mapping[str, str]:
        """``{key: meaning}`` of the batch entries :meth:`loss` reads (and needs)."""
        ...

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Named loss terms of one training step; ``"loss"`` is minimised, every term is logged."""
        ...

    def predict(self, batch: Batch) -> Tensor:
        """``(B, ...)`` the model's prediction for a batch (no gradients)."""
        ...


def _suggestion(model: nn.Module) -> str:
    from ..routing import Router  # the routing layer sits below train: a local import keeps this file light

    kind = type(model).__name__
    if any(isinstance(m, Router) for m in model.modules()):
        return (f"{kind} is a routed model, not an objective: wrap it in a router-training objective, e.g. "
                f"fit(EndToEnd(model), ...), Reinforce(model), or TopKBuffer(model, dataset_size=N)")
    if hasattr(model, "encode") and hasattr(model, "identities"):
        return f"{kind} is a model, not an objective: wrap it, e.g. fit(WinnerTakeAll(model), ...)"
    return (f"{kind} is a model, not an objective: wrap it, e.g. fit(Classification(model), ...) "
            f"(objectives have loss(batch), predict(batch) and batch_keys)")


def check_objective(objective: object) -> None:
    """Raise :class:`~modnets.errors.ConfigError` unless ``objective`` is an ``nn.Module`` meeting the
    :class:`Objective` contract; for a bare model the message names the objective to wrap it in."""
    if isinstance(objective, nn.Module) and isinstance(objective, Objective):
        return
    if isinstance(objective, nn.Module):
        raise ConfigError(_suggestion(objective))
    raise ConfigError(f"expected an Objective (an nn.Module with loss, predict and batch_keys), got "
                      f"{type(objective).__name__}")


def check_batch(objective: Objective, batch: object) -> None:
    """Check that ``batch`` carries every key ``objective`` reads.

    Raises:
        ConfigError: ``batch`` is not a mapping, or misses a key; the message names the missing key and its
            meaning, and the batch's keys that the objective does not read (the likely misnamed ones).
    """
    keys = objective.batch_keys
    if not isinstance(batch, Mapping):
        raise ConfigError(f"{type(objective).__name__} reads batches as mappings with keys "
                          f"{_describe(keys)}; got a {type(batch).__name__} (give fit a collate function "
                          "that returns a dict)")
    missing = [k for k in keys if k not in batch]
    if missing:
        unexpected = sorted(str(k) for k in batch if k not in keys)
        extra = f"; the batch has {', '.join(map(repr, unexpected))} instead" if unexpected else ""
        raise ConfigError(f"{type(objective).__name__}: the batch has no {_describe({k: keys[k] for k in missing})}"
                          f"{extra} (it reads {', '.join(map(repr, keys))})")


def check_input(x: object, key: str, model: nn.Module) -> Tensor:
    """``batch[key]`` checked as a model input: a torch tensor of the dtype of ``model``'s parameters.

    Raises:
        ConfigError: another type (a NumPy array, a list) or another dtype (float64 into a float32 model); the
            message names the key, what was received and how to convert it.
    """
    if not isinstance(x, Tensor):
        raise ConfigError(f"batch[{key!r}] must be a torch.Tensor, got {type(x).__name__} (convert it with "
                          "torch.as_tensor(x, dtype=torch.float32))")
    dtype = next((p.dtype for p in model.parameters()), x.dtype)
    if x.dtype != dtype:
        raise ConfigError(f"batch[{key!r}] must be {dtype} like the model's parameters, got {x.dtype} "
                          f"(convert it with x.to({dtype}))")
    return x


_WIDTH_MISMATCH = re.compile(r"shapes cannot be multiplied|size mismatch|Expected .*channels|must match the size")


@contextlib.contextmanager
def input_fits(key: str, x: Tensor, owner: str) -> Iterator[None]:
    """Turn torch's error for an input that does not fit the model's first layer (a wrong width or number of
    channels) into a :class:`~modnets.errors.ShapeError` that names the batch key and the shape received."""
    try:
        yield
    except RuntimeError as e:
        if isinstance(e, ShapeError) or not _WIDTH_MISMATCH.search(str(e)):
            raise
        raise ShapeError(f"batch[{key!r}] of shape {tuple(x.shape)} does not fit {owner} ({e})") from e


def _describe(keys: Mapping[str, str]) -> str:
    return ", ".join(f"{k!r} ({meaning})" for k, meaning in keys.items())
