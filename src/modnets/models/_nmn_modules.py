"""The Neural Module Network modules (Andreas et al. 2016; thesis 4.3), typed or untyped.

Every module sees the image features as context ``features: (batch, C, H, W)``. Attention maps are
``(batch, H, W)``: :class:`~modnets.types.Mask` (sigmoid) in the typed variant,
:class:`~modnets.types.HeatMap` (ReLU) in the untyped one. Answers are ``(batch, n_answers)``:
:class:`~modnets.types.Probs` (softmax) or :class:`~modnets.types.Logits`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..modules import MLP, FeatureAttention, Signature, TypedModule
from ..types import Algebra, DataType, FeatureMap

__all__ = ["Combine", "Find", "Measure", "Relate"]


class Find(TypedModule):
    """``find[value]``: attend to the cells whose features match an attribute value.

    The argument is embedded: it scales and shifts a 1x1 convolution of the features (as the
    element-wise weighting of the original NMN), and a second 1x1 convolution gives the map.
    """

    def __init__(self, values: Sequence[str], *, channels: int, hidden: int, mask: DataType) -> None:
        super().__init__(
            Signature(output=mask, context={"features": FeatureMap(channels)}), arguments=values
        )
        self.proj = nn.Conv2d(channels, hidden, 1)
        self.scale = nn.Embedding(len(values), hidden)
        self.shift = nn.Embedding(len(values), hidden)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)
        self.out = nn.Conv2d(hidden, 1, 1)
        nn.init.zeros_(self.out.bias)  # a negative start would leave ReLU heat maps dead (no gradient)

    def compute(self, *, arg: Tensor | None = None, features: Tensor) -> Tensor:
        h = self.proj(features) * self.scale(arg)[:, :, None, None] + self.shift(arg)[:, :, None, None]
        return self.out(F.relu(h)).squeeze(1)  # (B, H, W)


class Relate(TypedModule):
    """``relate[relation](mask)``: move attention to the cells in a spatial relation to the attended ones.

    Each relation owns a kernel over every relative offset ((2H-1) x (2W-1)), applied as a convolution
    of the input map (a per-example kernel, so all relations run in one batch); an objectness term from
    the features keeps the result on objects.
    """

    def __init__(
        self, relations: Sequence[str], *, channels: int, hidden: int, grid: tuple[int, int], mask: DataType
    ) -> None:
        super().__init__(
            Signature(inputs={"mask": mask}, output=mask, context={"features": FeatureMap(channels)}),
            arguments=relations,
        )
        self.grid = grid
        kh, kw = 2 * grid[0] - 1, 2 * grid[1] - 1
        self.kernels = nn.Embedding(len(relations), kh * kw)
        nn.init.normal_(self.kernels.weight, std=0.05)
        self.objectness = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))
        nn.init.zeros_(self.objectness[2].bias)
        self.bias = nn.Embedding(len(relations), 1)
        nn.init.zeros_(self.bias.weight)

    def compute(self, mask: Tensor, *, arg: Tensor | None = None, features: Tensor) -> Tensor:
        h, w = self.grid
        padded = F.pad(mask.unsqueeze(1), (w - 1, w - 1, h - 1, h - 1))
        patches = F.unfold(padded, (2 * h - 1, 2 * w - 1))  # (B, kh*kw, H*W)
        moved = torch.einsum("bkn,bk->bn", patches, self.kernels(arg)).view(-1, h, w)
        return moved + self.objectness(features).squeeze(1) + self.bias(arg)[:, :, None]


class Combine(TypedModule):
    """``and(a, b)`` / ``or(a, b)``: combine two attention maps with the interface's algebra.

    Typed masks use min / max; untyped heat maps use product / sum (thesis Table 4.3). No parameters.
    """

    def __init__(self, op: str, *, algebra: Algebra, mask: DataType) -> None:
        super().__init__(Signature(inputs={"a": mask, "b": mask}, output=mask))
        if op not in ("and", "or"):
            raise ValueError(f"op must be 'and' or 'or', got {op!r}")
        self.op = op
        self.algebra = algebra

    # The algebra keeps values in the domain; a second sigmoid would distort the masks.
    constrains_output = False

    def compute(self, a: Tensor, b: Tensor, *, arg: Tensor | None = None) -> Tensor:
        return self.algebra.and_(a, b) if self.op == "and" else self.algebra.or_(a, b)


class Measure(TypedModule):
    """An answer module: ``exist(mask)``, ``count(mask)`` or ``describe[attribute](mask)``.

    Pools the features under the map (weighted average) and summary statistics of the map (total
    mass per cell, maximum, mean), adds the embedded argument when there is one, and maps them through
    an MLP to one score per answer.
    """

    def __init__(
        self,
        *,
        channels: int,
        hidden: int,
        n_answers: int,
        mask: DataType,
        answer: DataType,
        arguments: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            Signature(inputs={"mask": mask}, output=answer, context={"features": FeatureMap(channels)}),
            arguments=arguments,
        )
        self.attend = FeatureAttention("sum")
        self.embed = nn.Embedding(len(arguments), hidden) if arguments is not None else None
        self.inp = nn.Linear(channels + 3, hidden)
        self.mlp = MLP(hidden, n_answers, (hidden,))

    def compute(self, mask: Tensor, *, arg: Tensor | None = None, features: Tensor) -> Tensor:
        flat = mask.flatten(1)
        stats = torch.stack([flat.sum(1) / 10.0, flat.max(1).values, flat.mean(1)], dim=1)  # (B, 3)
        h = self.inp(torch.cat([self.attend(features, mask), stats], dim=1))
        if self.embed is not None:
            h = h + self.embed(arg)
        return self.mlp(F.relu(h))
