"""The SGM study of thesis 4.2.3 (Figs 4.6-4.7): is a surrogate gradient module a relative indicator?

Many versions of the ``find`` unit (image stem, ``find`` and the other mask-making modules) are trained
through their SGM, each with its own seed and hyper-parameters (learning rate, SGM rank, epochs), and
scored by the SGM's held-out loss and its MC-dropout variance. The versions nearest the loss-variance Pareto
front are selected (Fig. 4.6). Each selected version is frozen in an NMN whose other modules (the answering
modules) then train end to end, from the same initial weights for every version; the full model's held-out
loss is measured. If the SGM is a good relative indicator, the full-model loss follows the SGM loss (the
thesis measured Pearson r = 0.9).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from ...analysis import (
    dependencies,
    plot_pareto_selection,
    plot_surrogate_correlation,
    select_near_pareto,
    surrogate_correlation,
)
from ...data import ANSWERS
from ...data import collate_clevr_like as collate
from ...models import QuestionEncoder, QuestionPrior, QuestionVocabulary, nmn, nmn_assembly
from ...modules import freeze
from ...train import (
    Classification,
    FitConfig,
    NMNModulewiseConfig,
    RunDir,
    fit,
    nmn_find_unit,
    predict,
    train_nmn_modulewise,
    validation_loss,
)

__all__ = ["prior_only_accuracy", "sgm_study"]

#: the learning rates (log10) and SGM ranks the candidates are drawn from
LOG_LR_RANGE = (-3.5, -2.0)
RANKS = (2, 4, 8, 16)


def sgm_study(config, train, valid, rundir: RunDir, out) -> dict:
    """Train ``config.sgm_candidates`` find units through their SGM, select ``config.sgm_selected`` near the
    Pareto front, train the rest of the NMN end to end around each selected one (frozen) and correlate.

    Returns:
        ``candidates`` (one dict per version: its settings, SGM loss and variance, whether selected, and for
        the selected ones the full model's held-out loss and accuracy), ``selected`` (indices),
        ``correlation`` (SGM loss vs full-model loss over the selected versions), ``full_loss_range`` and the
        ``figures`` written into ``out``.
    """
    rng = np.random.default_rng(config.seed + 4_700)
    subset = train.subset(range(min(config.sgm_examples, len(train))))
    plan = dependencies(nmn_assembly(True)).plan
    candidates, units = [], []
    for k in range(config.sgm_candidates):
        epochs = 1 + k % config.sgm_max_epochs
        lr = float(10 ** rng.uniform(*LOG_LR_RANGE))
        rank = int(rng.choice(RANKS))
        seed = config.seed + k
        settings = NMNModulewiseConfig(
            find=FitConfig(epochs=epochs, batch_size=64, lr=lr, seed=seed),
            heads=config.modulewise.heads, sgm_rank=rank, sgm_dropout=config.modulewise.sgm_dropout)
        torch.manual_seed(seed)
        model = nmn(True, image_size=config.image_size, hidden=config.hidden)
        done = train_nmn_modulewise(model, subset, plan=plan, collate=collate, config=settings,
                                    run=rundir.sub(f"candidate-{k:02d}"), valid=valid, seed=seed)
        units.append(copy.deepcopy(nmn_find_unit(model).state_dict()))
        candidates.append({"index": k, "seed": seed, "epochs": epochs, "lr": lr, "rank": rank,
                           "sgm_loss": done.sgm_score.loss, "sgm_variance": done.sgm_score.variance,
                           "find_seconds": done.run.timings.module_seconds["find"], "selected": False})

    losses = [c["sgm_loss"] for c in candidates]
    variances = [c["sgm_variance"] for c in candidates]
    selection = select_near_pareto(losses, variances, k=min(config.sgm_selected, len(candidates)))
    plot_pareto_selection(losses, variances, selection, out / "sgm_pareto.png",
                          title="find candidates: SGM loss and MC-dropout variance (Fig. 4.6)")
    for i in selection.selected:
        candidates[i]["selected"] = True
        t0 = time.perf_counter()
        torch.manual_seed(config.seed + 9_999)  # the same initial answering modules around every find unit
        model = nmn(True, image_size=config.image_size, hidden=config.hidden)
        unit = nmn_find_unit(model)
        unit.load_state_dict(units[i])
        freeze(*unit.values())
        objective = Classification(model, target="answer")
        fit(objective, train, config=config.sgm_full_fit, collate=collate, run=rundir.sub("full"),
            name=f"candidate-{i:02d}")
        candidates[i]["full_loss"] = validation_loss(objective, valid, collate=collate)
        candidates[i]["full_accuracy"] = float((predict(model, valid, collate=collate) == valid.answers).float().mean())
        candidates[i]["full_seconds"] = time.perf_counter() - t0

    chosen = [candidates[i] for i in selection.selected]
    sgm, full = [c["sgm_loss"] for c in chosen], [c["full_loss"] for c in chosen]
    corr = surrogate_correlation(sgm, full, seed=config.seed)
    plot_surrogate_correlation(sgm, full, out / "sgm_correlation.png", colors=[c["epochs"] for c in chosen],
                               color_label="find epochs through the SGM",
                               title="find: SGM loss vs full NMN loss (Fig. 4.7)")
    return {"candidates": candidates, "selected": list(selection.selected), "correlation": corr.to_dict(),
            "full_loss_range": [min(full), max(full)], "figures": ["sgm_pareto.png", "sgm_correlation.png"]}


def prior_only_accuracy(config, train, valid, vocab: QuestionVocabulary, rundir: RunDir) -> float:
    """Held-out accuracy of the question alone (a GRU question encoder and a read-out, no image): how much of
    the answers the question prior can give without looking, i.e. how little room is left for ``find``."""
    torch.manual_seed(config.seed)
    prior = QuestionPrior(QuestionEncoder(vocab, hidden=config.question_hidden), n_answers=len(ANSWERS))
    fit(Classification(prior, target="answer"), train, config=config.fit, collate=collate, run=rundir,
        name="prior_only")
    return float((predict(prior, valid, collate=collate) == valid.answers).float().mean())
