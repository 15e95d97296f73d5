"""Values on the probability simplex: categorical distributions and one-hot vectors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._base import DataType
from ._bounded import uniform_noise

__all__ = ["OneHot", "Probs"]

_SUM_TOL = 1e-3


@dataclass(frozen=True)
class Probs(DataType):
    """A categorical distribution over ``size`` classes along the last dimension (softmax output).

    ``augment`` follows thesis eq. 3.1 then eq. 3.2: uniform noise, then ``softmax(100 * x)`` so the
    noisy vector lies on the softmax manifold again.
    """

    def constrain(self, raw: Tensor) -> Tensor:
        return torch.softmax(raw, dim=-1)

    def augment(self, x: Tensor, level: float = 0.4, *, generator: torch.Generator | None = None) -> Tensor:
        return torch.softmax(uniform_noise(x, level, generator) * 100.0, dim=-1)

    def _shape_problem(self, x: Tensor) -> str | None:
        if x.dim() < 2:
            return "must have a class dimension after the batch dimension"
        return super()._shape_problem(x)

    def _check_values(self, x: Tensor) -> str | None:
        if x.numel() == 0:
            return None
        if float(x.min()) < -1e-6:
            return f"has negative probabilities (min {float(x.min()):.4g})"
        worst = float((x.sum(-1) - 1).abs().max())
        if worst > _SUM_TOL:
            return f"does not sum to 1 along the last dimension (largest deviation {worst:.4g})"
        return None


@dataclass(frozen=True)
class OneHot(Probs):
    """A (near) one-hot vector: a distribution whose mass should sit on one class.

    ``penalty`` is the mean entropy, which vanishes exactly at one-hot vectors.
    """

    def penalty(self, x: Tensor) -> Tensor:
        return -(x * torch.log(x.clamp_min(1e-12))).sum(-1).mean()

    @staticmethod
    def saturation(x: Tensor, reference: Tensor, threshold: float = 0.1) -> Tensor:
        """Fraction of values more than ``threshold`` away from the one-hot ``reference`` (thesis ch. 3).

        Args:
            x: ``(..., size)`` values.
            reference: ``(..., size)`` one-hot targets.

        Returns:
            scalar fraction in [0, 1].
        """
        return ((x - reference).abs() > threshold).float().mean()
