"""The NMN module library for easy-vqa's vocabulary (see :mod:`modnets.data` ``parse_easy_vqa_question``)."""

from __future__ import annotations

from ..compose import Library
from ..data import EASY_VQA_ANSWERS, EASY_VQA_ATTRIBUTES, EASY_VQA_FIND_VALUES
from ._nmn import nmn_library

__all__ = ["easy_vqa_library"]


def easy_vqa_library(typed: bool = True, *, channels: int = 66, hidden: int = 64,
                     grid: tuple[int, int] = (8, 8)) -> Library:
    """:func:`~modnets.models.nmn_library` over easy-vqa's vocabulary: ``find`` over its colours, shapes and
    ``object``, ``and``, ``or``, ``describe[color | shape]``, ``exist`` and ``not``; no ``relate``,
    ``same``, ``equal`` or ``compare`` (one object per image) and no ``count``. Answers index
    :data:`~modnets.data.EASY_VQA_ANSWERS`.

    Use with the NMN preset as ``nmn(typed, image_size=32, library=easy_vqa_library)``.

    Args:
        typed: typed (masks, probabilities) or untyped (heat maps, logits) interfaces.
        channels: feature channels of the image features.
        hidden: hidden width of every module.
        grid: feature-map size (H, W).

    Example:
        >>> from modnets.compose import Program
        >>> easy_vqa_library().check(Program.parse("not(exist(find[red]))"))
        Probs(size=13)
    """
    return nmn_library(
        typed,
        channels=channels,
        hidden=hidden,
        grid=grid,
        find_values=EASY_VQA_FIND_VALUES,
        relations=(),
        attributes=EASY_VQA_ATTRIBUTES,
        n_answers=len(EASY_VQA_ANSWERS),
        measures=("exist",),
        negation=(EASY_VQA_ANSWERS.index("no"), EASY_VQA_ANSWERS.index("yes")),
        reasoning=(),
    )
