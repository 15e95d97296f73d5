"""The abstract neural data type (thesis 4.2.1): hard constraint, soft constraint, validation, noise."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError, InterfaceError

__all__ = ["DataType"]


@dataclass(frozen=True)
class DataType(ABC):
    """What flows through a module interface.

    A data type describes one example's value; tensors carry a leading batch dimension. ``size`` is the
    length of the last (event) dimension when it matters (number of classes, of sequence positions, of
    latent features), ``None`` for any.

    Subclasses implement :meth:`constrain` (the hard constraint, thesis 4.2.1), and may override
    :meth:`penalty` (the semantic or soft constraint, as a loss term), :meth:`augment` (input noise for
    robust composition, thesis eq. 3.1 and 3.2) and :meth:`_check_values`.
    """

    size: int | None = None

    def __post_init__(self) -> None:
        if self.size is not None and (not isinstance(self.size, int) or self.size < 1):
            raise ConfigError(f"{type(self).__name__}: size must be a positive int or None, got {self.size!r}")

    # ------------------------------------------------------------------ the contract
    @abstractmethod
    def constrain(self, raw: Tensor) -> Tensor:
        """Map an unconstrained module output onto this type's domain.

        Args:
            raw: ``(batch, ...)`` unconstrained values.

        Returns:
            ``(batch, ...)`` values inside the domain (same shape unless the type says otherwise).
        """

    def penalty(self, x: Tensor) -> Tensor:
        """Soft (semantic) constraint as a scalar loss term; zero for types without one.

        Args:
            x: ``(batch, ...)`` values of this type.
        """
        return x.new_zeros(())

    def augment(self, x: Tensor, level: float = 0.4, *, generator: torch.Generator | None = None) -> Tensor:
        """Input noise for robust composition; by default additive Gaussian noise of std ``level``.

        Args:
            x: ``(batch, ...)`` clean values.
            level: noise level (for bounded types, the upper end of the uniform noise of eq. 3.1).

        Returns:
            ``(batch, ...)`` noisy values of the same type.
        """
        return x + level * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    def accepts(self, other: DataType) -> bool:
        """Whether a value of type ``other`` may be fed to an input of this type.

        By default: ``other`` is this type or a refinement of it (a subclass) and the sizes agree.
        """
        return isinstance(other, type(self)) and _sizes_agree(self.size, other.size)

    def validate(self, x: Tensor, *, where: str = "") -> None:
        """Raise :class:`~modnets.errors.InterfaceError` unless ``x`` is a valid batch of this type.

        Args:
            x: ``(batch, ...)`` values.
            where: who produced or consumes ``x`` (e.g. ``"module 'find[red]' output"``), for the message.
        """
        problem = self._problem(x)
        if problem is not None:
            prefix = f"{where}: " if where else ""
            shape = tuple(x.shape) if isinstance(x, Tensor) else None
            nonfinite = isinstance(x, Tensor) and x.is_floating_point() and problem == _nonfinite(x.detach())
            raise InterfaceError(f"{prefix}{self} value of shape {shape} {problem}", where=where, nonfinite=nonfinite)

    # ------------------------------------------------------------------ helpers for subclasses
    def _problem(self, x: Tensor) -> str | None:
        """What is wrong with ``x``, or ``None``."""
        if not isinstance(x, Tensor):
            return f"is a {type(x).__name__}, not a Tensor"
        x = x.detach()
        if not x.is_floating_point():
            return f"has dtype {x.dtype}, expected a floating dtype"
        if x.dim() < 1:
            return "has no batch dimension"
        shape_problem = self._shape_problem(x)
        if shape_problem is not None:
            return shape_problem
        return _nonfinite(x) or self._check_values(x)

    def _shape_problem(self, x: Tensor) -> str | None:
        """Shape checks; by default the last dimension must equal ``size`` when it is set."""
        if self.size is not None and (x.dim() < 2 or x.shape[-1] != self.size):
            return f"has last dimension {x.shape[-1] if x.dim() >= 2 else None}, expected {self.size}"
        return None

    def _check_values(self, x: Tensor) -> str | None:
        """Type-specific value checks on a finite tensor; ``None`` when fine."""
        return None

    def __str__(self) -> str:
        return type(self).__name__ if self.size is None else f"{type(self).__name__}({self.size})"


def _channels_first_problem(x: Tensor, size: int | None) -> str | None:
    """Shape check of ``(batch, channels, height, width)`` values whose ``size`` is the channel count."""
    if x.dim() != 4:
        return "must have 4 dimensions (batch, channels, height, width)"
    if size is not None and x.shape[1] != size:
        return f"has {x.shape[1]} channels, expected {size}"
    return None


def _sizes_agree(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


def _nonfinite(x: Tensor) -> str | None:
    """What is not finite in ``x`` (a floating tensor), or ``None``."""
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return None
    n_nan = int(torch.isnan(x).sum())
    return f"contains {n_nan} NaN and {int((~finite).sum()) - n_nan} infinite values"
