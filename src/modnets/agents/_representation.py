"""R(t): the representation of an environment's state that agents, controllers and operators work on."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["Representation"]


class Representation(Mapping[str, Tensor]):
    """Named tensors that share their leading (batch) dimension: the representation R(t) of thesis 3.1.

    A representation is immutable: every method returns a new one, so an operator's result never
    changes the representation it was given (and autograd sees plain tensor operations).

    Args:
        fields: name -> ``(batch, ...)`` tensor; at least one.

    Raises:
        ConfigError: no fields, a name that is not a string, or a value that is not a tensor.
        ShapeError: fields with different leading sizes, or a 0-d field.

    Example:
        >>> rep = Representation(digits=torch.eye(3)[None], a=torch.tensor([[1.0, 0.0, 0.0]]))
        >>> rep.batch_size, sorted(rep)
        (1, ['a', 'digits'])
        >>> rep.replace(a=torch.tensor([[0.0, 1.0, 0.0]]))["a"]
        tensor([[0., 1., 0.]])
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Tensor] | None = None, /, **named: Tensor) -> None:
        merged = {**(fields or {}), **named}
        if not merged:
            raise ConfigError("a Representation needs at least one field, got none")
        sizes = {}
        for name, value in merged.items():
            if not isinstance(name, str):
                raise ConfigError(f"Representation field names must be strings, got {name!r}")
            if not isinstance(value, Tensor):
                raise ConfigError(f"Representation field {name!r} must be a Tensor, got {type(value).__name__}")
            if value.dim() == 0:
                raise ShapeError(f"Representation field {name!r} needs a leading batch dimension, got a 0-d tensor")
            sizes[name] = value.shape[0]
        if len(set(sizes.values())) != 1:
            raise ShapeError(f"Representation fields must share their leading (batch) size, got {sizes}")
        self._fields: dict[str, Tensor] = merged

    # ------------------------------------------------------------------ Mapping
    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._fields[name]
        except KeyError:
            raise KeyError(f"no field {name!r} in the representation; fields: {', '.join(self._fields)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self._fields.items())
        return f"Representation({shapes})"

    # ------------------------------------------------------------------ new representations
    @property
    def batch_size(self) -> int:
        """Size of the leading dimension."""
        return next(iter(self._fields.values())).shape[0]

    def replace(self, **fields: Tensor) -> Representation:
        """The same representation with some fields replaced (or added)."""
        return Representation({**self._fields, **fields})

    def map(self, fn: Callable[[Tensor], Tensor]) -> Representation:
        """Apply ``fn`` to every field (e.g. ``rep.map(lambda x: x.flatten(0, 1))``)."""
        return Representation({k: fn(v) for k, v in self._fields.items()})

    def to(self, device: torch.device | str) -> Representation:
        """Every field on ``device``."""
        return self.map(lambda x: x.to(device))

    def detach(self) -> Representation:
        """Every field detached from the autograd graph."""
        return self.map(Tensor.detach)

    def rows(self, index: Tensor) -> Representation:
        """The examples at ``index``: ``(n,)`` long row indices."""
        return self.map(lambda x: x.index_select(0, index))

    def put_rows(self, index: Tensor, other: Representation) -> Representation:
        """This representation with the examples at ``index`` replaced by ``other``'s (differentiable).

        Args:
            index: ``(n,)`` long row indices.
            other: a representation with the same fields, ``n`` examples, and the same trailing shapes.

        Raises:
            ShapeError: ``other`` has different fields or shapes.
        """
        if set(other) != set(self._fields):
            raise ShapeError(f"put_rows needs the same fields, got {sorted(other)} for {sorted(self._fields)}")
        out = {}
        for k, v in self._fields.items():
            w = other[k]
            if w.shape[1:] != v.shape[1:] or w.shape[0] != index.shape[0]:
                raise ShapeError(
                    f"put_rows: field {k!r} of shape {tuple(w.shape)} does not fit {index.shape[0]} rows of "
                    f"{tuple(v.shape)}"
                )
            out[k] = v.index_copy(0, index, w.to(v.dtype))
        return Representation(out)

    def where(self, mask: Tensor, other: Representation) -> Representation:
        """Per example, this representation where ``mask`` holds and ``other`` elsewhere.

        Args:
            mask: ``(batch,)`` bool.
            other: a representation with the same fields and shapes.
        """
        if mask.shape != (self.batch_size,):
            raise ShapeError(f"where needs a ({self.batch_size},) mask, got {tuple(mask.shape)}")
        out = {}
        for k, v in self._fields.items():
            m = mask.reshape(-1, *([1] * (v.dim() - 1)))
            out[k] = torch.where(m, v, other[k])
        return Representation(out)

    @staticmethod
    def stack(reps: Sequence[Representation], dim: int = 1) -> Representation:
        """Stack representations with the same fields along a new dimension (``dim=1``: a time axis).

        Returns:
            fields of shape ``(batch, len(reps), ...)`` for ``dim=1``.
        """
        if not reps:
            raise ConfigError("stack needs at least one representation")
        names = list(reps[0])
        return Representation({k: torch.stack([r[k] for r in reps], dim=dim) for k in names})
