"""Transformations: elements of a matrix Lie group, built as the exponential of a Lie-algebra element."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._base import DataType

__all__ = ["Transform"]


@dataclass(frozen=True)
class Transform(DataType):
    """A square matrix ``T = exp(A)`` acting on ``size``-dimensional vectors (``(batch, size, size)``).

    ``constrain`` maps a Lie-algebra element (any ``(batch, size, size)`` matrix) to the group with the
    matrix exponential. ``penalty`` is the squared deviation of ``det T`` from 1 (volume preservation);
    ``augment`` right-multiplies by ``exp(level * noise)``, staying in the group.
    """

    def constrain(self, raw: Tensor) -> Tensor:
        return torch.linalg.matrix_exp(raw)

    def penalty(self, x: Tensor) -> Tensor:
        return ((torch.linalg.det(x) - 1) ** 2).mean()

    def augment(self, x: Tensor, level: float = 0.4, *, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x @ torch.linalg.matrix_exp(level * noise / x.shape[-1])

    def _shape_problem(self, x: Tensor) -> str | None:
        if x.dim() != 3 or x.shape[-1] != x.shape[-2]:
            return "must be a batch of square matrices (batch, size, size)"
        return super()._shape_problem(x)
