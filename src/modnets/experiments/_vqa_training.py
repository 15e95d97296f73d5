"""What the VQA experiments (``nmn``, ``generalization``, ``layouts``) share: a fit config reseeded per
repetition, training a model end to end on its answers, parameter counts, and the FiLM baseline sized to a
given parameter count."""

from __future__ import annotations

from typing import Any

from ..data import collate_clevr_like
from ..models import QuestionVocabulary, film
from ..train import Classification, FitConfig, FitResult, RunDir, fit


def seeded(fit_config: FitConfig, seed: int) -> FitConfig:
    """``fit_config`` with its seed replaced (one repetition of a study)."""
    return FitConfig(**{**fit_config.to_dict(), "seed": seed})


def fit_answers(model, data, fit_config: FitConfig, rundir: RunDir, name: str, collate=collate_clevr_like,
                valid=None) -> FitResult:
    """Train a VQA model end to end on its answers (cross-entropy on ``batch["answer"]``), validated on
    ``valid`` when given (the model then ends at its best epoch; see :func:`~modnets.train.fit`)."""
    return fit(Classification(model, target="answer"), data, config=fit_config, collate=collate, run=rundir,
               name=name, valid=valid)


def parameter_count(model) -> int:
    """Every parameter of ``model``, trainable or not."""
    return sum(p.numel() for p in model.parameters())


def film_of_size(settings: Any, vocab: QuestionVocabulary, target: int):
    """The FiLM baseline: ``settings.film_width`` wide, or (``None``) the width whose parameter count is closest
    to ``target`` (the typed NMN's). ``settings`` has ``image_size``, ``film_width``, ``film_blocks``, ``hidden``
    and ``question_hidden`` (an experiment's config or part of one)."""
    def build(width: int):
        return film(vocab, image_size=settings.image_size, width=width, n_blocks=settings.film_blocks,
                    hidden=settings.hidden, question_hidden=settings.question_hidden)

    if settings.film_width is not None:
        return build(settings.film_width)
    width = min(range(4, 257, 4), key=lambda w: abs(parameter_count(build(w)) - target))
    return build(width)
