"""The NMN's comparison answer modules: two attention maps in, one answer out (CLEVR's ``equal_color`` ...,
``equal_integer``, ``greater_than``, ``less_than``).

Both read two maps of the same type, :class:`~modnets.types.Mask` (typed) or
:class:`~modnets.types.HeatMap` (untyped), and answer with :class:`~modnets.types.Probs` or
:class:`~modnets.types.Logits` over the whole answer vocabulary (trained to say yes or no).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..hub import register_module
from ..modules import MLP, FeatureAttention, Signature, TypedModule
from ..types import DataType, FeatureMap, Mask
from ._nmn_modules import map_stats, measure_stats

__all__ = ["Compare", "Equal"]


class Equal(TypedModule):
    """``equal[attribute](a, b)``: whether the objects the two maps attend to share an attribute.

    Each map's object is described as in :class:`~modnets.models.Describe` (features pooled under the map and the map's
    summary statistics, through one shared linear layer, plus the embedded attribute); the answer reads
    the two descriptions symmetrically, through their absolute difference and their product, so
    ``equal[a](x, y)`` and ``equal[a](y, x)`` agree by construction.

    Shapes:
        ``a, b: (batch, H, W)``, ``features: (batch, C, H, W)`` -> ``(batch, n_answers)``.
    """

    def __init__(
        self,
        attributes: Sequence[str],
        *,
        channels: int,
        hidden: int,
        n_answers: int,
        mask: DataType,
        answer: DataType,
    ) -> None:
        super().__init__(
            Signature(inputs={"a": mask, "b": mask}, output=answer, context={"features": FeatureMap(channels)}),
            arguments=attributes,
        )
        self.attend = FeatureAttention("odds" if isinstance(mask, Mask) else "sum")
        self.embed = nn.Embedding(len(attributes), hidden)
        self.inp = nn.Linear(channels + 3, hidden)
        self.mlp = MLP(2 * hidden, n_answers, (hidden,))
        self.channels, self.hidden, self.n_answers = channels, hidden, n_answers

    def hub_config(self) -> dict:
        """The constructor's keyword arguments (what :mod:`modnets.hub` stores to rebuild the module)."""
        sig = self.signature
        return {"attributes": list(self.arguments), "channels": self.channels, "hidden": self.hidden,
                "n_answers": self.n_answers, "mask": sig.inputs[0][1], "answer": sig.output}

    def _describe(self, mask: Tensor, features: Tensor, attribute: Tensor) -> Tensor:
        """``(batch, hidden)``: the attended object, seen through the attribute."""
        pooled = torch.cat([self.attend(features, mask), map_stats(mask)], dim=1)  # (B, C + 3)
        return F.relu(self.inp(pooled) + attribute)

    def compute(self, a: Tensor, b: Tensor, *, arg: Tensor, features: Tensor) -> Tensor:
        attribute = self.embed(arg)
        ha, hb = self._describe(a, features, attribute), self._describe(b, features, attribute)
        return self.mlp(torch.cat([(ha - hb).abs(), ha * hb], dim=1))


class Compare(TypedModule):
    """``compare[comparison](a, b)``: whether map ``a`` holds as many objects as map ``b`` (``equal``),
    more or fewer.

    Like :class:`~modnets.models.Measure`, it sees order-free statistics of each map only (total mass / 10, mean, the
    ``top`` largest values), so its evidence must come from the modules that made the maps; it reads both
    maps' statistics and their difference, plus the embedded comparison.

    Shapes:
        ``a, b: (batch, H, W)`` -> ``(batch, n_answers)``.
    """

    def __init__(
        self,
        comparisons: Sequence[str],
        *,
        top: int = 8,
        hidden: int,
        n_answers: int,
        mask: DataType,
        answer: DataType,
    ) -> None:
        super().__init__(Signature(inputs={"a": mask, "b": mask}, output=answer), arguments=comparisons)
        self.top = top
        self.embed = nn.Embedding(len(comparisons), hidden)
        self.inp = nn.Linear(3 * (top + 2), hidden)
        self.mlp = MLP(hidden, n_answers, (hidden,))
        self.hidden, self.n_answers = hidden, n_answers

    def hub_config(self) -> dict:
        """The constructor's keyword arguments (what :mod:`modnets.hub` stores to rebuild the module)."""
        sig = self.signature
        return {"comparisons": list(self.arguments), "top": self.top, "hidden": self.hidden,
                "n_answers": self.n_answers, "mask": sig.inputs[0][1], "answer": sig.output}

    def compute(self, a: Tensor, b: Tensor, *, arg: Tensor) -> Tensor:
        sa, sb = measure_stats(a, self.top), measure_stats(b, self.top)
        return self.mlp(F.relu(self.inp(torch.cat([sa, sb, sa - sb], dim=1)) + self.embed(arg)))


register_module(Equal, name="modnets.models.Equal")
register_module(Compare, name="modnets.models.Compare")
