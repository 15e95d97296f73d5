"""Bounded values: masks, pointers, heat maps and images."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ._base import DataType, _channels_first_problem, _sizes_agree

__all__ = ["Bounded", "HeatMap", "Image", "Mask", "Pointer", "uniform_noise"]

_TOL = 1e-5


def uniform_noise(x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
    """Thesis eq. 3.1: ``|x - U(0, level)|``, noise that keeps one-hot-like values near their manifold.

    Args:
        x: ``(...)`` values, typically in [0, 1].
        level: upper end of the uniform noise (0.4 in the thesis).

    Returns:
        ``(...)`` noisy values.
    """
    if level < 0:
        raise ConfigError(f"noise level must be >= 0, got {level}")
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) * level
    return (x - u).abs()


@dataclass(frozen=True)
class Bounded(DataType):
    """Values inside ``[low, high]``; either end may be open (``None``).

    ``constrain`` is a scaled sigmoid when both ends are finite, a shifted ReLU when only ``low`` is and
    a mirrored ReLU when only ``high`` is. ``augment`` applies eq. 3.1 relative to the range and clamps.

    Args:
        low: lower bound or ``None``.
        high: upper bound or ``None``.
        size: event size (last dimension) or ``None``.
    """

    low: float | None = field(default=0.0, kw_only=True)
    high: float | None = field(default=1.0, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ConfigError(f"{type(self).__name__}: low must be < high, got low={self.low}, high={self.high}")

    def constrain(self, raw: Tensor) -> Tensor:
        if self.low is not None and self.high is not None:
            return self.low + (self.high - self.low) * torch.sigmoid(raw)
        if self.low is not None:
            return self.low + F.relu(raw - self.low) if self.low else F.relu(raw)
        if self.high is not None:
            return self.high - F.relu(self.high - raw)
        return raw

    def augment(self, x: Tensor, level: float = 0.4, *, generator: torch.Generator | None = None) -> Tensor:
        if self.low is None or self.high is None:
            scale = 1.0
            noisy = x + level * scale * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        else:
            scale = self.high - self.low
            noisy = self.low + scale * uniform_noise((x - self.low) / scale, level, generator)
        return noisy.clamp(
            min=-math.inf if self.low is None else self.low, max=math.inf if self.high is None else self.high
        )

    def accepts(self, other: DataType) -> bool:
        # Plain ranges (Bounded, HeatMap) accept any bounded value inside them; semantic refinements
        # (Mask, Pointer, Image) accept only their own kind.
        kind = Bounded if type(self) in (Bounded, HeatMap) else type(self)
        if not isinstance(other, kind) or not _sizes_agree(self.size, other.size):
            return False
        low_ok = self.low is None or (other.low is not None and other.low >= self.low)
        high_ok = self.high is None or (other.high is not None and other.high <= self.high)
        return low_ok and high_ok

    def _check_values(self, x: Tensor) -> str | None:
        lo = float(x.min()) if x.numel() else 0.0
        hi = float(x.max()) if x.numel() else 0.0
        if self.low is not None and lo < self.low - _TOL:
            return f"has values below {self.low} (min {lo:.4g})"
        if self.high is not None and hi > self.high + _TOL:
            return f"has values above {self.high} (max {hi:.4g})"
        return None

    def __str__(self) -> str:
        if type(self) is not Bounded:
            return super().__str__()
        return f"Bounded[{self.low}, {self.high}]" + ("" if self.size is None else f"({self.size})")


@dataclass(frozen=True)
class Mask(Bounded):
    """A soft mask (attention map) with values in (0, 1): the typed attention of thesis Table 4.3.

    ``constrain`` is the sigmoid; masks combine with :class:`~modnets.types.MaskAlgebra`
    (AND = min, OR = max, NOT = 1 - x). ``penalty`` pushes values towards 0 or 1 (mean of x(1 - x)).
    """

    def __post_init__(self) -> None:
        if (self.low, self.high) != (0.0, 1.0):
            raise ConfigError(f"{type(self).__name__} is bounded to [0, 1]; use Bounded for other ranges")
        super().__post_init__()

    def constrain(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)

    def penalty(self, x: Tensor) -> Tensor:
        return (x * (1 - x)).mean()


@dataclass(frozen=True)
class Pointer(Mask):
    """A position along a sequence: a mask that is one-hot along its last dimension (thesis ch. 3).

    Valid when exactly one position is above 0.5 (the thesis' validity test, see :meth:`is_valid`).
    ``penalty`` adds the squared deviation of the total mass from 1 to the saturation term.
    """

    def penalty(self, x: Tensor) -> Tensor:
        return super().penalty(x) + ((x.sum(-1) - 1) ** 2).mean()

    @staticmethod
    def is_valid(x: Tensor) -> Tensor:
        """``(batch,)`` bool: exactly one position above 0.5 in each ``(batch, length)`` pointer."""
        return (x > 0.5).sum(-1) == 1


@dataclass(frozen=True)
class HeatMap(Bounded):
    """An unnormalised, non-negative attention map (ReLU): the standard column of thesis Table 4.3."""

    low: float | None = field(default=0.0, kw_only=True)
    high: float | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if (self.low, self.high) != (0.0, None):
            raise ConfigError(f"{type(self).__name__} is bounded to [0, inf); use Bounded for other ranges")
        super().__post_init__()

    def constrain(self, raw: Tensor) -> Tensor:
        return F.relu(raw)


@dataclass(frozen=True)
class Image(Bounded):
    """An image batch ``(batch, channels, height, width)`` with values in [0, 1].

    ``size`` is the number of channels (dimension 1, not the last one).
    """

    def __post_init__(self) -> None:
        if (self.low, self.high) != (0.0, 1.0):
            raise ConfigError("Image values are bounded to [0, 1]")
        DataType.__post_init__(self)

    def _shape_problem(self, x: Tensor) -> str | None:
        return _channels_first_problem(x, self.size)

    def constrain(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)
