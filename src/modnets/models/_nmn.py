"""Presets: the NMN module library and the full NMN model (image stem + modules run by programs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..compose import Library, Program
from ..data import ANSWERS, COLORS, RELATIONS, SHAPES, SIZES
from ..errors import ShapeError
from ..modules import CNNStem
from ..types import HeatMap, Logits, Mask, Probs, algebra
from ._nmn_modules import Combine, Describe, Find, Measure, Relate

__all__ = ["NMN", "nmn", "nmn_library"]

DESCRIBE_ATTRIBUTES = ("color", "shape", "size")


def nmn_library(
    typed: bool = True,
    *,
    channels: int = 66,
    hidden: int = 64,
    grid: tuple[int, int] = (12, 12),
    find_values: Sequence[str] = (*COLORS, *SHAPES, *SIZES),
    relations: Sequence[str] = RELATIONS,
    attributes: Sequence[str] = DESCRIBE_ATTRIBUTES,
    n_answers: int = len(ANSWERS),
) -> Library:
    """The NMN modules: find, relate, and, or, exist, count, describe.

    The two variants differ only in their interface types (thesis Table 4.3): typed modules exchange
    sigmoid :class:`~modnets.types.Mask` maps combined with min / max and answer with softmax
    :class:`~modnets.types.Probs`; untyped ones exchange ReLU :class:`~modnets.types.HeatMap` maps
    combined with product / sum and answer with :class:`~modnets.types.Logits`. The other differences
    follow from the types: ``find`` starts its sigmoid masks nearly empty (bias -2) and its ReLU heat
    maps at zero bias (a negative start would leave them without gradient), and ``describe`` pools
    features with the softmax of a mask's logits but with a heat map's plain weighted average.

    Args:
        typed: typed (neural data types) or untyped interfaces.
        channels: feature channels of the image features the modules attend over.
        hidden: hidden width of every module.
        grid: feature-map size (H, W).
        find_values: the arguments of ``find``.
        relations: the arguments of ``relate``.
        attributes: the arguments of ``describe``.
        n_answers: size of the answer vocabulary.

    Example:
        >>> lib = nmn_library(typed=True, grid=(8, 8))
        >>> lib.check(Program.parse("count(and(find[red], relate[left](find[cube])))"))
        Probs(size=26)
    """
    mask = Mask() if typed else HeatMap()
    answer = Probs(n_answers) if typed else Logits(n_answers)
    alg = algebra(typed)
    heads = {"hidden": hidden, "n_answers": n_answers, "mask": mask, "answer": answer}
    return Library(
        {
            "find": Find(find_values, channels=channels, mask=mask, initial_bias=-2.0 if typed else 0.0),
            "relate": Relate(relations, channels=channels, grid=grid, mask=mask),
            "and": Combine("and", algebra=alg, mask=mask),
            "or": Combine("or", algebra=alg, mask=mask),
            "exist": Measure(**heads),
            "count": Measure(**heads),
            "describe": Describe(attributes, channels=channels, **heads),
        }
    )


class NMN(nn.Module):
    """A Neural Module Network: an image stem and a library of modules run by one program per example.

    Args:
        library: the modules (see :func:`nmn_library`); they read the stem's output as ``features``.
        stem: maps images ``(batch, 3, H, W)`` to features ``(batch, C, h, w)``.
    """

    def __init__(self, *, library: Library, stem: nn.Module) -> None:
        super().__init__()
        self.library = library
        self.stem = stem

    def forward(self, images: Tensor, programs: Sequence[Program]) -> Tensor:
        """Answer scores.

        Args:
            images: ``(batch, 3, H, W)`` in [0, 1].
            programs: one program per image.

        Returns:
            ``(batch, n_answers)`` probabilities (typed) or logits (untyped).
        """
        if images.shape[0] != len(programs):
            raise ShapeError(f"got {images.shape[0]} images but {len(programs)} programs")
        return self.library(programs, features=self.stem(images))

    def log_probs(self, images: Tensor, programs: Sequence[Program]) -> Tensor:
        """``(batch, n_answers)`` log-probabilities of the answers, whatever the answer type."""
        out = self(images, programs)
        return _log_probs(out, self.library.check(programs[0]))

    def loss(self, batch: Mapping) -> dict[str, Tensor]:
        """Named loss terms on a collated batch (``image``, ``program``, ``answer``).

        Returns:
            ``loss`` (mean negative log-likelihood of the answer) and ``accuracy``.
        """
        logp = self.log_probs(batch["image"], batch["program"])
        target = batch["answer"]
        return {
            "loss": F.nll_loss(logp, target),
            "accuracy": (logp.argmax(1) == target).float().mean().detach(),
        }

    @torch.no_grad()
    def predict(self, batch: Mapping) -> Tensor:
        """``(batch,)`` predicted answer indices."""
        return self(batch["image"], batch["program"]).argmax(1)


def _log_probs(values: Tensor, answer_type: object) -> Tensor:
    if isinstance(answer_type, Probs):
        return torch.log(values.clamp_min(1e-8))
    if isinstance(answer_type, Logits):
        return F.log_softmax(values, dim=1)
    raise ShapeError(f"NMN programs must end in an answer module (Probs or Logits), got {answer_type}")


def nmn(typed: bool = True, *, image_size: int = 48, channels: Sequence[int] = (32, 64), hidden: int = 64) -> NMN:
    """The NMN preset: a :class:`~modnets.modules.CNNStem` with coordinate channels and
    :func:`nmn_library`.

    Args:
        typed: typed or untyped interfaces.
        image_size: input resolution; the feature grid is ``image_size / 2**len(channels)``.
        channels: stem stages.
        hidden: module width.
    """
    stages = len(channels)
    if image_size % (2**stages):
        raise ShapeError(f"image_size must be divisible by {2**stages}, got {image_size}")
    g = image_size // 2**stages
    stem = CNNStem(3, channels, coords=True)
    return NMN(library=nmn_library(typed, channels=stem.out_channels, hidden=hidden, grid=(g, g)), stem=stem)
