"""Combining attention maps: the typed mask algebra and its untyped counterpart (thesis Table 4.3)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["Algebra", "MaskAlgebra", "ProductSumAlgebra", "algebra"]


class Algebra(ABC):
    """How AND, OR and NOT combine two attention maps of the same shape ``(batch, ...)``."""

    name: str

    @abstractmethod
    def and_(self, a: Tensor, b: Tensor) -> Tensor:
        """Conjunction of two maps."""

    @abstractmethod
    def or_(self, a: Tensor, b: Tensor) -> Tensor:
        """Disjunction of two maps."""

    def not_(self, a: Tensor) -> Tensor:
        """Negation: ``1 - a``."""
        return 1 - a

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MaskAlgebra(Algebra):
    """Typed masks in [0, 1]: AND = min, OR = max, NOT = 1 - x; results stay in [0, 1] at any depth."""

    name = "min/max"

    def and_(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.minimum(a, b)

    def or_(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.maximum(a, b)


class ProductSumAlgebra(Algebra):
    """Untyped heat maps: AND = product, OR = sum (values may leave [0, 1] as programs deepen)."""

    name = "product/sum"

    def and_(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b

    def or_(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


def algebra(typed: bool) -> Algebra:
    """The mask algebra for typed interfaces, the product/sum algebra for untyped ones."""
    return MaskAlgebra() if typed else ProductSumAlgebra()
