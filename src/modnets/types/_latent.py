"""Unbounded values: untyped latent features and logits."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ._base import DataType, _channels_first_problem

__all__ = ["FeatureMap", "Latent", "Logits"]


@dataclass(frozen=True)
class Latent(DataType):
    """An untyped, unbounded representation (the "standard implementation" column of thesis Table 4.3).

    ``constrain`` is the identity, and an untyped input accepts any real-valued type of a compatible size,
    so typed and untyped variants of a model differ only in their interface types.
    """

    def constrain(self, raw: Tensor) -> Tensor:
        return raw

    def accepts(self, other: DataType) -> bool:
        return self.size is None or other.size is None or self.size == other.size


@dataclass(frozen=True)
class Logits(Latent):
    """Unnormalised class scores along the last dimension (``size`` classes)."""

    def accepts(self, other: DataType) -> bool:
        return isinstance(other, Logits) and super().accepts(other)


@dataclass(frozen=True)
class FeatureMap(Latent):
    """Unbounded features on a spatial grid, ``(batch, channels, height, width)``.

    ``size`` is the number of channels (dimension 1).
    """

    def _shape_problem(self, x: Tensor) -> str | None:
        return _channels_first_problem(x, self.size)
