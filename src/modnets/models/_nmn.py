"""Presets: the NMN module library and the full NMN model (image stem + modules run by programs)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..compose import Library, Program
from ..data import ANSWERS, COLORS, COMPARISONS, RELATIONS, SHAPES, SIZES
from ..errors import ConfigError, ShapeError
from ..modules import CNNStem
from ..types import HeatMap, Logits, Mask, Probs, algebra
from ._nmn_compare import Compare, Equal
from ._nmn_modules import Combine, Describe, Find, Measure, Relate, Same
from ._nmn_negate import Negate
from ._question import QuestionEncoder, QuestionPrior, QuestionVocabulary

__all__ = ["NMN", "PRIOR_KEY", "PRIOR_MERGES", "AnswerScores", "nmn", "nmn_library"]

DESCRIBE_ATTRIBUTES = ("color", "shape", "size")
#: The CLEVR-style reasoning modules :func:`nmn_library` may add (the ``clevr`` programs use all three).
REASONING = ("same", "equal", "compare")


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
    measures: Sequence[str] = ("exist", "count"),
    negation: tuple[int, int] | None = None,
    reasoning: Sequence[str] = REASONING,
    comparisons: Sequence[str] = COMPARISONS,
) -> Library:
    """The NMN modules: find, relate, same, and, or, exist, count, describe, equal, compare (and optionally
    not).

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
        relations: the arguments of ``relate``; none: the library has no ``relate`` module.
        attributes: the arguments of ``describe``, ``same`` and ``equal``.
        n_answers: size of the answer vocabulary.
        measures: the map-measuring answer modules to include, a subset of ``("exist", "count")``.
        negation: the answer indices of ``(no, yes)``: adds ``not``, a :class:`Negate` module that swaps
            them (``not(exist(find[red]))``); ``None``: no ``not`` module.
        reasoning: the CLEVR-style reasoning modules to include, a subset of ``("same", "equal",
            "compare")``: ``same[attribute]`` (:class:`Same`, map to map), ``equal[attribute]``
            (:class:`Equal`) and ``compare[comparison]`` (:class:`Compare`), two maps to an answer. The
            ``clevr`` programs of :func:`~modnets.data.make_clevr_like` need all three, the ``sets`` and
            ``chains`` programs none.
        comparisons: the arguments of ``compare``.

    Raises:
        ConfigError: ``measures`` names a module other than ``exist`` / ``count``, ``reasoning`` one
            outside ``("same", "equal", "compare")``, or ``negation`` is not two distinct answer indices.

    Example:
        >>> lib = nmn_library(typed=True, grid=(8, 8))
        >>> lib.check(Program.parse("count(and(find[red], relate[left](find[cube])))"))
        Probs(size=26)
    """
    mask = Mask() if typed else HeatMap()
    answer = Probs(n_answers) if typed else Logits(n_answers)
    alg = algebra(typed)
    heads = {"hidden": hidden, "n_answers": n_answers, "mask": mask, "answer": answer}
    unknown = [m for m in measures if m not in ("exist", "count")]
    if unknown or isinstance(measures, str):
        raise ConfigError(f"nmn_library measures must be a subset of ('exist', 'count'), got {measures!r}")
    unknown = [m for m in reasoning if m not in REASONING]
    if unknown or isinstance(reasoning, str):
        raise ConfigError(f"nmn_library reasoning must be a subset of {REASONING}, got {reasoning!r}")
    modules: dict[str, nn.Module] = {
        "find": Find(find_values, channels=channels, mask=mask, initial_bias=-2.0 if typed else 0.0),
    }
    if len(relations):
        modules["relate"] = Relate(relations, channels=channels, grid=grid, mask=mask)
    if "same" in reasoning:
        modules["same"] = Same(attributes, channels=channels, mask=mask)
    modules["and"] = Combine("and", algebra=alg, mask=mask)
    modules["or"] = Combine("or", algebra=alg, mask=mask)
    for name in ("exist", "count"):
        if name in measures:
            modules[name] = Measure(**heads)
    modules["describe"] = Describe(attributes, channels=channels, **heads)
    if "equal" in reasoning:
        modules["equal"] = Equal(attributes, channels=channels, **heads)
    if "compare" in reasoning:
        modules["compare"] = Compare(comparisons, **heads)
    if negation is not None:
        modules["not"] = Negate(answer=answer, swap=tuple(negation))
    return Library(modules)


#: How :class:`NMN` merges the question prior with the root module's answer.
PRIOR_MERGES = ("none", "geometric", "logits")
#: The batch key of cached prior logits ``(batch, n_answers)``; when present it replaces the question encoder.
PRIOR_KEY = "prior_logits"


class AnswerScores(NamedTuple):
    """An :class:`NMN`'s answer scores on a batch, branch by branch.

    Attributes:
        root: ``(batch, n_answers)`` the root module's output: probabilities (typed) or logits (untyped).
        prior: ``(batch, n_answers)`` the question prior's logits, or ``None`` without a prior.
        logits: ``(batch, n_answers)`` the merged, unnormalised log-scores of the answers.
        log_probs: ``(batch, n_answers)`` ``log_softmax(logits)``: the model's answer distribution.
    """

    root: Tensor
    prior: Tensor | None
    logits: Tensor
    log_probs: Tensor


class NMN(nn.Module):
    """A Neural Module Network: an image stem and a library of modules run by one program per example,
    with an optional question-prior branch.

    The prior's logits ``q`` (from ``question_prior`` on the batch's questions, or cached in the batch
    under :data:`PRIOR_KEY`) merge with the root module's answer ``p`` (thesis 4.3.2):

    - ``"none"``: the answer is the root module's alone;
    - ``"geometric"``: the original NMN's geometric average of the two distributions, renormalised:
      ``softmax(q)**0.5 * p**0.5 / Z``;
    - ``"logits"``: the prior as an additive bias: root logits + ``q``, where a typed ``Probs`` root
      contributes its log-probabilities.

    Args:
        library: the modules (see :func:`nmn_library`); they read the stem's output as ``features``.
        stem: maps images ``(batch, 3, H, W)`` to features ``(batch, C, h, w)``.
        prior: one of :data:`PRIOR_MERGES`.
        question_prior: the prior branch (a :class:`~modnets.models.QuestionPrior`: questions ->
            ``(batch, n_answers)`` logits). ``None`` with a merging ``prior``: every batch must carry
            cached prior logits under :data:`PRIOR_KEY`.

    Raises:
        ConfigError: an unknown ``prior``, or a ``question_prior`` with ``prior="none"``.
    """

    def __init__(
        self, *, library: Library, stem: nn.Module, prior: str = "none", question_prior: nn.Module | None = None
    ) -> None:
        super().__init__()
        if prior not in PRIOR_MERGES:
            raise ConfigError(f"NMN prior must be one of {PRIOR_MERGES}, got {prior!r}")
        if prior == "none" and question_prior is not None:
            raise ConfigError("NMN got a question_prior with prior='none'; choose 'geometric' or 'logits'")
        self.library = library
        self.stem = stem
        self.prior = prior
        self.question_prior = question_prior

    def forward(self, images: Tensor, programs: Sequence[Program]) -> Tensor:
        """The root modules' answers (the module branch only; :meth:`scores` merges the prior).

        Args:
            images: ``(batch, 3, H, W)`` in [0, 1].
            programs: one program per image.

        Returns:
            ``(batch, n_answers)`` probabilities (typed) or logits (untyped).
        """
        if images.shape[0] != len(programs):
            raise ShapeError(f"got {images.shape[0]} images but {len(programs)} programs")
        return self.library(programs, features=self.stem(images))

    def prior_logits(self, batch: Mapping) -> Tensor | None:
        """``(batch, n_answers)`` prior logits: cached in ``batch[PRIOR_KEY]``, else from the question
        prior on ``batch["question"]``; ``None`` when ``prior="none"``.

        Raises:
            ConfigError: a merging prior, no question prior and no cached logits in the batch.
        """
        if self.prior == "none":
            return None
        if PRIOR_KEY in batch:
            return batch[PRIOR_KEY]
        if self.question_prior is None:
            raise ConfigError(
                f"NMN(prior={self.prior!r}) has no question_prior: batches must carry cached prior logits "
                f"under {PRIOR_KEY!r}"
            )
        return self.question_prior(batch["question"])

    def log_probs(self, images: Tensor, programs: Sequence[Program], *, prior_logits: Tensor | None = None) -> Tensor:
        """``(batch, n_answers)`` log-probabilities of the answers, whatever the answer type.

        Args:
            images: ``(batch, 3, H, W)``.
            programs: one program per image.
            prior_logits: ``(batch, n_answers)`` the prior's logits (needed when ``prior`` is not "none").
        """
        return self._merge(self(images, programs), programs, prior_logits).log_probs

    def scores(self, batch: Mapping) -> AnswerScores:
        """Both branches and their merge on a collated batch (``image``, ``program``, and ``question`` or
        ``prior_logits`` when the model has a prior)."""
        prior = self.prior_logits(batch)
        return self._merge(self(batch["image"], batch["program"]), batch["program"], prior)

    def _merge(self, root: Tensor, programs: Sequence[Program], prior: Tensor | None) -> AnswerScores:
        answer_type = self.library.check(programs[0])
        if self.prior == "none":
            logp = _log_probs(root, answer_type)
            return AnswerScores(root, None, logp, logp)
        if prior is None:
            raise ConfigError(f"NMN(prior={self.prior!r}) needs prior_logits, got None")
        if prior.shape != root.shape:
            raise ShapeError(
                f"prior logits must have the root answers' shape {tuple(root.shape)}, got {tuple(prior.shape)}"
            )
        if self.prior == "geometric":
            logits = 0.5 * (_log_probs(root, answer_type) + F.log_softmax(prior, dim=1))
        else:
            logits = _root_logits(root, answer_type) + prior
        return AnswerScores(root, prior, logits, F.log_softmax(logits, dim=1))

    @property
    def batch_keys(self) -> dict[str, str]:
        """The batch entries :meth:`logits` reads."""
        keys = {"image": "(B, 3, H, W) images in [0, 1]", "program": "one Program per image"}
        if self.prior != "none" and self.question_prior is None:
            keys[PRIOR_KEY] = "(B, n_answers) cached prior logits (the model has no question prior)"
        elif self.prior != "none":
            keys["question"] = "one question string per image, for the question prior"
        return keys

    def logits(self, batch: Mapping) -> Tensor:
        """``(batch, n_answers)`` the answers' log-probabilities on a collated batch (the scores trained by
        :class:`~modnets.train.Classification`)."""
        return self.scores(batch).log_probs

    @torch.no_grad()
    def predict(self, batch: Mapping) -> Tensor:
        """``(batch,)`` predicted answer indices."""
        return self.scores(batch).logits.argmax(1)


def _root_logits(values: Tensor, answer_type: object) -> Tensor:
    """A root answer as logits: a ``Probs`` answer's log-probabilities, a ``Logits`` answer itself."""
    if isinstance(answer_type, Probs):
        return torch.log(values.clamp_min(1e-8))
    if isinstance(answer_type, Logits):
        return values
    raise ShapeError(f"NMN programs must end in an answer module (Probs or Logits), got {answer_type}")


def _log_probs(values: Tensor, answer_type: object) -> Tensor:
    logits = _root_logits(values, answer_type)
    return logits if isinstance(answer_type, Probs) else F.log_softmax(logits, dim=1)


def nmn(
    typed: bool = True,
    *,
    image_size: int = 48,
    channels: Sequence[int] = (32, 64),
    hidden: int = 64,
    prior: str = "none",
    questions: QuestionVocabulary | None = None,
    question_hidden: int = 64,
    library: Callable[..., Library] = nmn_library,
) -> NMN:
    """The NMN preset: a :class:`~modnets.modules.CNNStem` with coordinate channels, a module library
    and, optionally, a question prior.

    Args:
        typed: typed or untyped interfaces.
        image_size: input resolution; the feature grid is ``image_size / 2**len(channels)``.
        channels: stem stages.
        hidden: module width.
        prior: how the question prior merges with the root answer (see :class:`NMN`).
        questions: the question vocabulary of the prior's encoder (a GRU of width ``question_hidden``
            and embeddings of width ``question_hidden / 2``); ``None`` with a merging ``prior``: no
            encoder, the batches carry cached prior logits.
        question_hidden: width of the question encoder.
        library: the module-library builder, called as ``library(typed, channels=, hidden=, grid=)``:
            :func:`nmn_library` (CLEVR-like vocabulary) or :func:`~modnets.models.easy_vqa_library`.

    Raises:
        ShapeError: ``image_size`` is not divisible by ``2**len(channels)``.
        ConfigError: ``questions`` with ``prior="none"``.
    """
    stages = len(channels)
    if image_size % (2**stages):
        raise ShapeError(f"image_size must be divisible by {2**stages}, got {image_size}")
    if prior == "none" and questions is not None:
        raise ConfigError("nmn got a question vocabulary with prior='none'; choose 'geometric' or 'logits'")
    g = image_size // 2**stages
    stem = CNNStem(3, channels, coords=True)
    lib = library(typed, channels=stem.out_channels, hidden=hidden, grid=(g, g))
    question_prior = None
    if questions is not None:
        encoder = QuestionEncoder(questions, embed=max(1, question_hidden // 2), hidden=question_hidden)
        question_prior = QuestionPrior(encoder, n_answers=_n_answers(lib))
    return NMN(library=lib, stem=stem, prior=prior, question_prior=question_prior)


def _n_answers(library: Library) -> int:
    """The answer vocabulary's size: the size of the first answer type among the modules' outputs."""
    for name in library.names:
        out = library.signature(name).output
        if isinstance(out, Probs | Logits) and out.size is not None:
            return out.size
    raise ConfigError(f"the library has no answer module (Probs or Logits output); modules: {library.names}")
