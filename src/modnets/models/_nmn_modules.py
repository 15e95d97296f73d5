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

from ..errors import ConfigError
from ..hub import register_module
from ..modules import MLP, FeatureAttention, Signature, TypedModule
from ..types import Algebra, DataType, FeatureMap, Mask

__all__ = ["Combine", "Describe", "Find", "Measure", "Relate", "Same", "map_stats", "measure_stats"]


class Find(TypedModule):
    """``find[value]``: attend to the cells whose features match an attribute value.

    Each argument value owns a linear read-out of the features at every cell (an embedded weight vector
    and bias): the per-value 1x1 convolution of the original NMN. Cheap per call, so that the feature
    extraction lives in the shared stem and runs once per image.

    ``initial_bias`` sets where maps start: slightly negative for sigmoid masks (nearly empty maps, so
    a weighted average over a map is not swamped by the background), zero for ReLU heat maps (a
    negative start would leave them dead, with no gradient).
    """

    def __init__(self, values: Sequence[str], *, channels: int, mask: DataType, initial_bias: float = 0.0) -> None:
        super().__init__(Signature(output=mask, context={"features": FeatureMap(channels)}), arguments=values)
        self.weight = nn.Embedding(len(values), channels)
        self.bias = nn.Embedding(len(values), 1)
        nn.init.normal_(self.weight.weight, std=channels**-0.5)
        nn.init.constant_(self.bias.weight, initial_bias)
        self.initial_bias = initial_bias

    def hub_config(self) -> dict:
        """The constructor's keyword arguments (what :mod:`modnets.hub` stores to rebuild the module)."""
        return {"values": list(self.arguments), "channels": self.weight.embedding_dim,
                "mask": self.signature.output, "initial_bias": self.initial_bias}

    # Many finds per image: read every value out of each image once, then pick (image, value) maps.
    indexes_context = True

    def share(self, *, features: Tensor) -> dict[str, Tensor]:
        """``maps: (B, V, H, W)``, every value's map of every image."""
        b, c, h, w = features.shape
        maps = torch.matmul(self.weight.weight, features.reshape(b, c, h * w)) + self.bias.weight
        return {"maps": maps.view(b, -1, h, w)}

    def compute(self, *, arg: Tensor, examples: Tensor, shared: dict[str, Tensor], features: Tensor) -> Tensor:
        maps = shared["maps"]
        return maps.flatten(0, 1).index_select(0, examples * maps.shape[1] + arg)  # (n, H, W)


class Relate(TypedModule):
    """``relate[relation](mask)``: move attention to the cells in a spatial relation to the attended ones.

    Each relation owns a kernel over every relative offset ((2H-1) x (2W-1)), applied as a full-size
    convolution of the input map, plus a linear read-out of the features at each cell that keeps the
    result on objects. The convolution is one matrix product with the kernels laid out as
    (H*W, H*W) Toeplitz matrices, for all relations at once, so calls with different relations batch.
    """

    def __init__(self, relations: Sequence[str], *, channels: int, grid: tuple[int, int], mask: DataType) -> None:
        super().__init__(
            Signature(inputs={"mask": mask}, output=mask, context={"features": FeatureMap(channels)}),
            arguments=relations,
        )
        self.grid = grid
        h, w = grid
        self.kernels = nn.Parameter(torch.randn(len(relations), (2 * h - 1) * (2 * w - 1)) * 0.05)
        # layout[q, r * HW + p]: position in the flattened kernels of the entry of relation r that carries
        # cell q's mass to cell p, so one gather lays all kernels out as a (HW, R * HW) matrix.
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        offset = (ys[None, :] - ys[:, None] + h - 1) * (2 * w - 1) + (xs[None, :] - xs[:, None] + w - 1)  # [q, p]
        size = (2 * h - 1) * (2 * w - 1)
        layout = torch.cat([offset + r * size for r in range(len(relations))], dim=1)
        self.register_buffer("layout", layout.flatten(), persistent=False)
        self.weight = nn.Embedding(len(relations), channels)
        nn.init.normal_(self.weight.weight, std=channels**-0.5)
        self.bias = nn.Embedding(len(relations), 1)
        nn.init.zeros_(self.bias.weight)

    def hub_config(self) -> dict:
        """The constructor's keyword arguments (what :mod:`modnets.hub` stores to rebuild the module)."""
        return {"relations": list(self.arguments), "channels": self.weight.embedding_dim,
                "grid": list(self.grid), "mask": self.signature.output}

    # Relate calls run at every depth: read every relation out of each image once per batch and pick
    # (image, relation) maps, rather than gathering a copy of the features for every call.
    indexes_context = True

    def share(self, *, features: Tensor) -> dict[str, Tensor]:
        """``local: (B, R, H, W)``, every relation's feature read-out of every image."""
        b, c, h, w = features.shape
        local = torch.matmul(self.weight.weight, features.reshape(b, c, h * w)) + self.bias.weight
        return {"local": local.view(b, -1, h, w)}

    def compute(
        self, mask: Tensor, *, arg: Tensor, examples: Tensor, shared: dict[str, Tensor], features: Tensor
    ) -> Tensor:
        h, w = self.grid
        n_rel, cells = self.kernels.shape[0], h * w
        toeplitz = self.kernels.flatten().index_select(0, self.layout).view(cells, n_rel * cells)
        moved_all = mask.flatten(1) @ toeplitz  # (B, R*HW)
        moved = moved_all.view(-1, n_rel, cells).gather(1, arg.view(-1, 1, 1).expand(-1, 1, cells))
        local = shared["local"].flatten(0, 1).index_select(0, examples * n_rel + arg)
        return moved.view(-1, h, w) + local


class Combine(TypedModule):
    """``and(a, b)`` / ``or(a, b)``: combine two attention maps with the interface's algebra.

    Typed masks use min / max; untyped heat maps use product / sum (thesis Table 4.3). No parameters.
    """

    def __init__(self, op: str, *, algebra: Algebra, mask: DataType) -> None:
        super().__init__(Signature(inputs={"a": mask, "b": mask}, output=mask))
        if op not in ("and", "or"):
            raise ConfigError(f"op must be 'and' or 'or', got {op!r}")
        self.op = op
        self.algebra = algebra

    # The algebra keeps values in the domain; a second sigmoid would distort the masks.
    constrains_output = False

    def compute(self, a: Tensor, b: Tensor, *, arg: Tensor | None = None) -> Tensor:
        return self.algebra.and_(a, b) if self.op == "and" else self.algebra.or_(a, b)


class Measure(TypedModule):
    """``exist(mask)`` / ``count(mask)``: answer from the attention map alone.

    The module sees order-free statistics of the map only: its total mass / 10, mean, and its ``top``
    largest values (sorted). Seeing neither the image nor where the mass is, it must take its evidence
    from the ``find`` / ``relate`` modules that made the map, and the largest values reward maps that
    light up on objects rather than on the background (an inverted map would serve a readout of the
    whole flattened map equally well, and then ``describe`` could not use it).
    """

    def __init__(self, *, top: int = 8, hidden: int, n_answers: int, mask: DataType, answer: DataType) -> None:
        super().__init__(Signature(inputs={"mask": mask}, output=answer))
        self.top = top
        self.hidden, self.n_answers = hidden, n_answers
        self.mlp = MLP(top + 2, n_answers, (hidden,))

    def hub_config(self) -> dict:
        """The constructor's keyword arguments (what :mod:`modnets.hub` stores to rebuild the module)."""
        sig = self.signature
        return {"top": self.top, "hidden": self.hidden, "n_answers": self.n_answers,
                "mask": sig.inputs[0][1], "answer": sig.output}

    def compute(self, mask: Tensor, *, arg: Tensor | None = None) -> Tensor:
        return self.mlp(measure_stats(mask, self.top))


class Describe(TypedModule):
    """``describe[attribute](mask)``: answer a question about the attended object's attribute.

    Pools the features under the map, adds the embedded attribute and the map's summary statistics,
    and maps them through an MLP to one score per answer. A sigmoid mask pools with the softmax of its
    logits (``FeatureAttention("odds")``: the cells the mask is surest of dominate, so a faint
    background cannot swamp one small object); a ReLU heat map pools with its plain weighted average.
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
            Signature(inputs={"mask": mask}, output=answer, context={"features": FeatureMap(channels)}),
            arguments=attributes,
        )
        self.attend = FeatureAttention("odds" if isinstance(mask, Mask) else "sum")
        self.embed = nn.Embedding(len(attributes), hidden)
        self.inp = nn.Linear(channels + 3, hidden)
        self.mlp = MLP(hidden, n_answers, (hidden,))
        self.channels, self.hidden, self.n_answers = channels, hidden, n_answers

    def hub_config(self) -> dict:
        """The constructor's keyword arguments (what :mod:`modnets.hub` stores to rebuild the module)."""
        sig = self.signature
        return {"attributes": list(self.arguments), "channels": self.channels, "hidden": self.hidden,
                "n_answers": self.n_answers, "mask": sig.inputs[0][1], "answer": sig.output}

    def compute(self, mask: Tensor, *, arg: Tensor | None = None, features: Tensor) -> Tensor:
        h = self.inp(torch.cat([self.attend(features, mask), map_stats(mask)], dim=1)) + self.embed(arg)
        return self.mlp(F.relu(h))


class Same(TypedModule):
    """``same[attribute](mask)``: attend to the other objects that share an attribute with the attended one.

    CLEVR's ``same_color`` and kin: the input map attends to one object. Each attribute owns a soft
    classifier of every cell into ``classes`` learned classes (a linear read-out of the features and a
    softmax over the classes), meant to become that attribute's values. The attended object's class
    distribution is its cells' distributions pooled under the map (the softmax of a sigmoid mask's logits,
    a heat map's plain weighted average, as :class:`Describe`), and a cell's score is the probability that
    the cell and the object fall in the same class, scaled per attribute. A linear read-out of the features
    keeps the result on objects (as in :class:`Relate`), and a learned weight per attribute times the input
    map pushes the attended object itself out of the result.

    At the start the classes are nearly uniform, so the score is nearly constant and the module sends
    little gradient into the map it reads (a mask that is still learning what to attend to is left alone).

    Shapes:
        ``mask: (batch, H, W)``, ``features: (batch, C, H, W)`` -> ``(batch, H, W)``.
    """

    def __init__(
        self, attributes: Sequence[str], *, channels: int, mask: DataType, classes: int = 8
    ) -> None:
        super().__init__(
            Signature(inputs={"mask": mask}, output=mask, context={"features": FeatureMap(channels)}),
            arguments=attributes,
        )
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 2:
            raise ConfigError(f"Same classes must be an int >= 2, got {classes!r}")
        self.attend = FeatureAttention("odds" if isinstance(mask, Mask) else "sum")
        # Per attribute: `classes` rows of class logits, then one row of object read-out.
        self.weight = nn.Parameter(torch.randn(len(attributes), classes + 1, channels) * channels**-0.5)
        self.bias = nn.Parameter(torch.zeros(len(attributes), classes + 1, 1))
        self.scale = nn.Parameter(torch.full((len(attributes),), 4.0))
        self.exclude = nn.Parameter(torch.full((len(attributes),), 4.0))
        self.channels, self.classes = channels, classes

    def hub_config(self) -> dict:
        """The constructor's keyword arguments (what :mod:`modnets.hub` stores to rebuild the module)."""
        return {"attributes": list(self.arguments), "channels": self.channels, "mask": self.signature.output,
                "classes": self.classes}

    # Read every attribute's classes out of each image once per batch; calls pick (image, attribute) rows.
    indexes_context = True

    def share(self, *, features: Tensor) -> dict[str, Tensor]:
        """``readout: (B, A, classes + 1, H, W)``, every attribute's class logits and object read-out."""
        b, c, h, w = features.shape
        readout = torch.matmul(self.weight.flatten(0, 1), features.reshape(b, c, h * w))  # (B, A*(K+1), HW)
        readout = readout.view(b, *self.weight.shape[:2], h * w) + self.bias
        return {"readout": readout.view(b, *self.weight.shape[:2], h, w)}

    def compute(
        self, mask: Tensor, *, arg: Tensor, examples: Tensor, shared: dict[str, Tensor], features: Tensor
    ) -> Tensor:
        readout = shared["readout"]  # (B, A, K+1, H, W)
        mine = readout.flatten(0, 1).index_select(0, examples * readout.shape[1] + arg)  # (n, K+1, H, W)
        classes = F.softmax(mine[:, : self.classes], dim=1)  # (n, K, H, W)
        referent = self.attend(classes, mask)  # (n, K): the attended object's classes
        same = torch.einsum("nk,nkhw->nhw", referent, classes)  # (n, H, W) in [0, 1]
        return self.scale[arg].view(-1, 1, 1) * same + mine[:, self.classes] - self.exclude[arg].view(-1, 1, 1) * mask


def map_stats(mask: Tensor) -> Tensor:
    """``mask: (B, H, W)`` -> ``(B, 3)``: total mass / 10, maximum and mean of each map."""
    flat = mask.flatten(1)
    return torch.stack([flat.sum(1) / 10.0, flat.max(1).values, flat.mean(1)], dim=1)


def measure_stats(mask: Tensor, top: int) -> Tensor:
    """``mask: (B, H, W)`` -> ``(B, top + 2)``: order-free statistics of each map (what :class:`Measure`
    reads): total mass / 10, mean and the ``top`` largest values, sorted."""
    flat = mask.flatten(1)
    largest = flat.topk(min(top, flat.shape[1]), dim=1).values
    return torch.cat([flat.sum(1, keepdim=True) / 10.0, flat.mean(1, keepdim=True), largest], 1)


# The names stored in hub manifests: entries saved under them keep loading.
register_module(Find, name="modnets.models.Find")
register_module(Relate, name="modnets.models.Relate")
register_module(Measure, name="modnets.models.Measure")
register_module(Describe, name="modnets.models.Describe")
register_module(Same, name="modnets.models.Same")
