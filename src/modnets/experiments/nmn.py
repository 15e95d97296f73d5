"""Experiment ``nmn``: the NMN study of thesis chapter 4 on generated CLEVR-like scenes and on easy-vqa.

- Table 4.2 analogue: the original (untyped) NMN with the geometric question prior trained end to end, the
  same modules trained module-wise along the training plan (interfaces untouched), and the typed modules
  (sigmoid masks, min / max, probabilities) with the prior added as logits, trained module-wise; test
  accuracy and training cost (sequential and parallel, searches included).
- Fig. 4.7 analogue: ``find`` trained through its SGM with varied hyper-parameters and epochs, each frozen
  while the answering modules train from its cached outputs; Pearson r between SGM and full-model loss.
- Figs 4.12-4.13 analogue: error by program depth, trained on depth <= 5, for typed and untyped modules
  trained end to end, the module-wise regimes and a FiLM baseline.
- easy-vqa: the typed modules trained module-wise on the real easy-vqa set vs the untyped NMN end to end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._checks import check_ints
from .._config import Config as ConfigBase
from ..analysis import (
    accuracy_by,
    dependencies,
    format_dependency_table,
    format_training_plan,
    plot_error_curves,
    plot_surrogate_correlation,
    surrogate_correlation,
)
from ..data import ClevrLikeConfig, collate_easy_vqa, load_easy_vqa, make_clevr_like
from ..data import collate_clevr_like as collate
from ..errors import ConfigError
from ..models import QuestionVocabulary, easy_vqa_library, film, nmn, nmn_assembly
from ..train import (
    Classification,
    FitConfig,
    NMNModulewiseConfig,
    RunDir,
    check_backend,
    fit,
    predict,
    train_nmn_modulewise,
    validation_loss,
)
from ._report import Report, markdown_table, percent

__all__ = ["Config", "run"]

#: not data-parallel: besides ``fit`` it runs searches, caches and stage backends that each process would
#: repeat on its own (use ``--backend ray`` to spread the module-wise stages instead)
DATA_PARALLEL = False

#: Table 4.2 regimes: (typed, prior merge, module-wise)
REGIMES = {"end_to_end": (False, "geometric", False), "modular": (False, "geometric", True),
           "modular_typed": (True, "logits", True)}
REGIME_LABELS = {"end_to_end": "end to end (original NMN)", "modular": "modular (interfaces untouched)",
                 "modular_typed": "modular + neural data types"}
# Thesis Table 4.2 (VQA v1 test accuracy).
PAPER_ACCURACY = {"end_to_end": 0.5487, "modular": 0.5449, "modular_typed": 0.5666}
PAPER_PEARSON = (0.9, 1e-14)
# Thesis code on CLEVR (trained on depth <= 5): mean error with / without neural data types.
PAPER_ERROR = {"typed": {"seen": 0.228, "unseen": 0.472}, "untyped": {"seen": 0.309, "unseen": 0.551}}


@dataclass
class Config(ConfigBase):
    """Settings of the ``nmn`` experiment (``Config.for_mode(quick)`` gives the two presets)."""

    quick: bool = False
    seed: int = 0
    image_size: int = 32
    n_train: int = 10000
    n_valid: int = 1500
    max_train_depth: int = 5
    max_test_depth: int = 12
    n_test_per_depth: int = 300
    hidden: int = 64
    question_hidden: int = 64
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=6, batch_size=64, lr=2e-3))
    modulewise: NMNModulewiseConfig = field(default_factory=lambda: NMNModulewiseConfig(
        find=FitConfig(epochs=6, batch_size=64, lr=2e-3), heads=FitConfig(epochs=15, batch_size=128, lr=3e-3),
        prior=FitConfig(epochs=4, batch_size=64, lr=3e-3), search_trials=6, search_examples=2000))
    film_width: int = 48
    film_blocks: int = 3
    sgm_candidates: int = 20
    sgm_examples: int = 2000
    sgm_max_epochs: int = 4
    easy_vqa_train: int = 8000
    easy_vqa_test: int = 2000
    easy_vqa_fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=4, batch_size=64, lr=2e-3))
    backend: str = "sequential"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.max_train_depth < 2:
            raise ConfigError(f"max_train_depth must be >= 2, got {self.max_train_depth}")
        if self.max_test_depth < self.max_train_depth:
            raise ConfigError(
                f"max_test_depth must be >= max_train_depth ({self.max_train_depth}), got {self.max_test_depth}"
            )
        check_ints(self, "n_train", "n_valid", "n_test_per_depth", "hidden", "question_hidden", "film_width",
                   "film_blocks", "sgm_examples", "sgm_max_epochs", "easy_vqa_train", "easy_vqa_test")
        check_ints(self, "sgm_candidates", minimum=3)
        check_backend(self.backend)

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0) -> Config:
        if quick:
            return cls(
                quick=True, seed=seed, n_train=2000, n_valid=400, n_test_per_depth=40, hidden=32,
                question_hidden=32, fit=FitConfig(epochs=2, batch_size=64, lr=3e-3, seed=seed),
                modulewise=NMNModulewiseConfig(
                    find=FitConfig(epochs=2, batch_size=64, lr=3e-3, seed=seed),
                    heads=FitConfig(epochs=4, batch_size=128, lr=3e-3, seed=seed),
                    prior=FitConfig(epochs=1, batch_size=64, lr=3e-3, seed=seed),
                    search_trials=2, search_examples=300),
                film_width=32, film_blocks=2, sgm_candidates=6, sgm_examples=800, sgm_max_epochs=2,
                easy_vqa_train=1500, easy_vqa_test=500,
                easy_vqa_fit=FitConfig(epochs=2, batch_size=64, lr=3e-3, seed=seed),
            )
        return cls(seed=seed, fit=FitConfig(epochs=6, batch_size=64, lr=2e-3, seed=seed),
                   easy_vqa_fit=FitConfig(epochs=4, batch_size=64, lr=2e-3, seed=seed))


def run(config: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Report:
    """Run the whole study; write plots, logs and checkpoints into ``out_dir``; return the report
    (``resume=True``: every training continues from its checkpoints in ``out_dir``)."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    seen = tuple(range(2, config.max_train_depth + 1))
    train = make_clevr_like(ClevrLikeConfig(n_examples=config.n_train, depths=seen, image_size=config.image_size,
                                            seed=config.seed))
    valid = make_clevr_like(ClevrLikeConfig(n_examples=config.n_valid, depths=seen, image_size=config.image_size,
                                            seed=config.seed + 20_000))
    test_depths = tuple(range(2, config.max_test_depth + 1))
    test = make_clevr_like(ClevrLikeConfig(n_examples=config.n_test_per_depth * len(test_depths), depths=test_depths,
                                           image_size=config.image_size, seed=config.seed + 10_000))
    vocab = QuestionVocabulary.build(train.questions)
    metrics: dict = {"data_seconds": time.perf_counter() - t0}
    plan = dependencies(nmn_assembly(True, prior=True))
    rundir = RunDir(out, resume=resume, progress=progress)

    # ---- Table 4.2: three regimes; error by depth of every model
    by_depth: dict[str, dict[int, float]] = {}
    accuracy, cost, modulewise = {}, {}, {}
    for regime, (typed, prior, modular) in REGIMES.items():
        torch.manual_seed(config.seed)
        model = nmn(typed, image_size=config.image_size, hidden=config.hidden, prior=prior, questions=vocab,
                    question_hidden=config.question_hidden)
        if modular:
            done = train_nmn_modulewise(model, train, plan=plan.plan, collate=collate, config=config.modulewise,
                                        run=rundir.sub(regime), valid=valid, seed=config.seed,
                                        backend=config.backend, address=config.ray_address)
            modulewise[regime] = done.to_dict()
            cost[regime] = {"sequential": done.run.timings.sequential_seconds,
                            "parallel": done.run.timings.parallel_seconds}
        else:
            seconds = _fit(model, train, config.fit, rundir, regime)
            cost[regime] = {"sequential": seconds, "parallel": seconds}
        by_depth[regime] = accuracy_by(predict(model, test, collate=collate) == test.answers, test.depths)
        accuracy[regime] = _mean_over(by_depth[regime], test.depths, seen)

    torch.manual_seed(config.seed)
    typed_model = nmn(True, image_size=config.image_size, hidden=config.hidden, prior="logits", questions=vocab,
                      question_hidden=config.question_hidden)
    cost["typed_end_to_end"] = _fit(typed_model, train, config.fit, rundir, "typed_end_to_end")
    torch.manual_seed(config.seed)
    baseline = film(vocab, image_size=config.image_size, width=config.film_width, n_blocks=config.film_blocks,
                    hidden=config.hidden, question_hidden=config.question_hidden)
    cost["film"] = _fit(baseline, train, config.fit, rundir, "film")
    curves = {
        "typed": accuracy_by(predict(typed_model, test, collate=collate) == test.answers, test.depths),
        "untyped": by_depth["end_to_end"],
        "film": accuracy_by(predict(baseline, test, collate=collate) == test.answers, test.depths),
        "modular": by_depth["modular"],
        "modular_typed": by_depth["modular_typed"],
    }
    sizes = {"typed": _parameters(typed_model), "film": _parameters(baseline)}

    # ---- Fig. 4.7: SGM loss vs full-model loss over find candidates
    candidates = _sgm_study(config, train, valid, rundir.sub("sgm").quiet())
    corr = surrogate_correlation([c["sgm_loss"] for c in candidates], [c["full_loss"] for c in candidates])
    plot_surrogate_correlation([c["sgm_loss"] for c in candidates], [c["full_loss"] for c in candidates],
                               out / "sgm_correlation.png", colors=[c["epochs"] for c in candidates],
                               color_label="find epochs through the SGM",
                               title="find: SGM loss vs full NMN loss")

    # ---- easy-vqa: typed modules module-wise vs the untyped NMN end to end
    easy = _easy_vqa(config, rundir.sub("easy_vqa"))

    plot_error_curves({_CURVE_LABELS[k]: v for k, v in curves.items()}, out / "error_by_depth.png",
                      title=f"error by program depth (trained on depth <= {config.max_train_depth})",
                      trained_up_to=config.max_train_depth)
    metrics.update({
        "accuracy": accuracy,
        "train_seconds": cost,
        "modulewise": modulewise,
        "sgm_pearson_r": corr.r,
        "sgm_p_value": corr.p_value,
        "sgm_candidates": candidates,
        "error_by_depth": {k: {str(d): 1 - a for d, a in v.items()} for k, v in curves.items()},
        "error_seen_unseen": {k: _seen_unseen(v, test.depths, config.max_train_depth) for k, v in curves.items()},
        "parameters": sizes,
        "easy_vqa_accuracy": easy["accuracy"],
        "easy_vqa": easy,
        "total_seconds": time.perf_counter() - t0,
    })
    return _report(config, metrics, plan, len(train), len(test))


_CURVE_LABELS = {"typed": "typed NMN (end to end)", "untyped": "untyped NMN (end to end)", "film": "FiLM",
                 "modular": "untyped NMN (module-wise)", "modular_typed": "typed NMN (module-wise)"}


def _fit(model, data, fit_config: FitConfig, rundir: RunDir, name: str, collate_fn=collate) -> float:
    """Seconds to train a VQA model end to end on its answers."""
    return fit(Classification(model, target="answer"), data, config=fit_config, collate=collate_fn, run=rundir,
               name=name).seconds


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _mean_over(acc_by_depth: dict[int, float], depths: torch.Tensor, wanted) -> float:
    counts = {d: int((depths == d).sum()) for d in wanted if d in acc_by_depth}
    return sum(acc_by_depth[d] * n for d, n in counts.items()) / max(1, sum(counts.values()))


def _seen_unseen(acc_by_depth, depths, max_train_depth) -> dict[str, float]:
    present = sorted(acc_by_depth)
    seen = [d for d in present if d <= max_train_depth]
    unseen = [d for d in present if d > max_train_depth]
    return {"seen": 1 - _mean_over(acc_by_depth, depths, seen),
            "unseen": 1 - _mean_over(acc_by_depth, depths, unseen) if unseen else math.nan}


def _sgm_study(config: Config, train, valid, rundir: RunDir) -> list[dict]:
    """``find`` candidates with varied learning rate, SGM rank and epochs: SGM loss and full-model loss each."""
    rng = np.random.default_rng(config.seed + 4_700)
    subset = train.subset(range(min(config.sgm_examples, len(train))))
    plan = dependencies(nmn_assembly(True)).plan
    rows = []
    for k in range(config.sgm_candidates):
        epochs = 1 + k % config.sgm_max_epochs
        lr = float(10 ** rng.uniform(-3.5, -2.0))
        rank = int(rng.choice([2, 4, 8, 16]))
        settings = NMNModulewiseConfig(
            find=FitConfig(epochs=epochs, batch_size=64, lr=lr, seed=config.seed + k),
            heads=config.modulewise.heads, sgm_rank=rank, sgm_dropout=config.modulewise.sgm_dropout)
        torch.manual_seed(config.seed + k)
        model = nmn(True, image_size=config.image_size, hidden=config.hidden)
        done = train_nmn_modulewise(model, subset, plan=plan, collate=collate, config=settings,
                                    run=rundir.sub(f"candidate-{k:02d}"), valid=valid, seed=config.seed + k)
        rows.append({"epochs": epochs, "lr": lr, "rank": rank, "sgm_loss": done.sgm_score.loss,
                     "sgm_variance": done.sgm_score.variance,
                     "full_loss": validation_loss(Classification(model, target="answer"), valid, collate=collate),
                     "seconds": done.run.timings.sequential_seconds})
    return rows


def _easy_vqa(config: Config, rundir: RunDir) -> dict:
    train = load_easy_vqa("train", image_size=config.image_size, limit=config.easy_vqa_train)
    test = load_easy_vqa("test", image_size=config.image_size, limit=config.easy_vqa_test)
    vocab = QuestionVocabulary.build(train.questions)
    held = int(0.1 * len(train))
    valid, fit_on = train.subset(range(held)), train.subset(range(held, len(train)))
    accuracy, seconds = {}, {}
    for name, typed, prior in (("end_to_end", False, "geometric"), ("modular_typed", True, "logits")):
        torch.manual_seed(config.seed)
        model = nmn(typed, image_size=config.image_size, hidden=config.hidden, prior=prior, questions=vocab,
                    question_hidden=config.question_hidden, library=easy_vqa_library)
        if name == "end_to_end":
            seconds[name] = {"sequential": _fit(model, fit_on, config.easy_vqa_fit, rundir, name,
                                                collate_fn=collate_easy_vqa)}
            seconds[name]["parallel"] = seconds[name]["sequential"]
        else:
            settings = NMNModulewiseConfig(find=config.easy_vqa_fit, heads=config.modulewise.heads,
                                           prior=config.easy_vqa_fit, sgm_rank=config.modulewise.sgm_rank)
            done = train_nmn_modulewise(model, fit_on, plan=dependencies(nmn_assembly(True, prior=True)).plan,
                                        collate=collate_easy_vqa, config=settings, valid=valid, seed=config.seed,
                                        run=rundir.sub(name))
            seconds[name] = {"sequential": done.run.timings.sequential_seconds,
                             "parallel": done.run.timings.parallel_seconds}
        accuracy[name] = float((predict(model, test, collate=collate_easy_vqa) == test.answers).float().mean())
    return {"accuracy": accuracy, "train_seconds": seconds, "majority_accuracy": test.majority_accuracy(),
            "n_train": len(fit_on), "n_test": len(test)}


# ------------------------------------------------------------------------------------------------ report


def _report(config: Config, metrics: dict, plan, n_train: int, n_test: int) -> Report:
    acc, cost = metrics["accuracy"], metrics["train_seconds"]
    headline = markdown_table(
        ["regime", f"our test acc. (depth <= {config.max_train_depth})", "thesis (VQA v1)",
         "cost, sequential", "cost, parallel"],
        [(REGIME_LABELS[r], percent(acc[r]), percent(PAPER_ACCURACY[r], 2), f"{cost[r]['sequential']:.0f} s",
          f"{cost[r]['parallel']:.0f} s") for r in REGIMES],
    )
    order = sorted(REGIMES, key=lambda r: acc[r])
    paper_order = sorted(REGIMES, key=lambda r: PAPER_ACCURACY[r])
    table_comment = (
        "Our numbers come from generated CLEVR-like scenes (2D renders, programs from the data), not VQA v1 "
        "(real photos, parsed questions, a pretrained VGG), so only the ordering of the regimes is comparable. "
        f"Our ordering, worst to best: {', '.join(order)}; the thesis's: {', '.join(paper_order)}"
        + (" (the same)." if order == paper_order else " (different).")
        + f" Module-wise (typed), the parallel cost is {_ratio(cost, 'modular_typed')} of the sequential one; "
        f"the slowest module is {_slowest(metrics['modulewise']['modular_typed'])}. The cost includes the Optuna "
        f"search of find's learning rate and SGM rank ({config.modulewise.search_trials} trials) and writing the "
        "cache. The end-to-end cost is one training of the whole model (its sequential and parallel cost are "
        "the same; data-parallel training with --nproc is another matter)."
        + (" Quick mode trains on a few thousand questions for one or two epochs: its accuracies are close to "
           "chance and its orderings are noise; read the full run's." if config.quick else "")
    )
    r, p, n = metrics["sgm_pearson_r"], metrics["sgm_p_value"], len(metrics["sgm_candidates"])
    sgm_text = (
        f"{n} versions of the find unit (stem + find + relate) trained through the SGM (learning rate "
        f"10^-3.5..10^-2, SGM rank 2-16, 1-{config.sgm_max_epochs} epochs on {config.sgm_examples} examples), "
        "each frozen while describe / exist / count train from its cached masks; full model: the assembled NMN "
        f"without prior. Pearson r = {r:.2f} (p = {p:.2g}) between the SGM's held-out loss and the full model's "
        f"held-out loss; the thesis measured r = {PAPER_PEARSON[0]} (p = {PAPER_PEARSON[1]:g}) on VQA v1. "
        + ("Our correlation is as strong or stronger" if r >= PAPER_PEARSON[0] else
           "Our correlation is weaker than the thesis's" if r > 0 else "We find no positive correlation")
        + f"; with {n} points, p is larger than the thesis's (which used more candidates and real data)."
    )
    sgm_table = markdown_table(
        ["epochs", "lr", "SGM rank", "SGM loss", "full-model loss"],
        [(c["epochs"], f"{c['lr']:.2g}", c["rank"], f"{c['sgm_loss']:.3f}", f"{c['full_loss']:.3f}")
         for c in metrics["sgm_candidates"]],
    )
    err = metrics["error_seen_unseen"]
    depth_rows = [(_CURVE_LABELS[k], percent(v["seen"]), percent(v["unseen"]),
                   percent(PAPER_ERROR[k]["seen"]) if k in PAPER_ERROR else "-",
                   percent(PAPER_ERROR[k]["unseen"]) if k in PAPER_ERROR else "-") for k, v in err.items()]
    depths = sorted(int(d) for d in metrics["error_by_depth"]["typed"])
    per_depth = markdown_table(
        ["depth", *[_CURVE_LABELS[k] for k in metrics["error_by_depth"]]],
        [(d, *[percent(v[str(d)]) for v in metrics["error_by_depth"].values()]) for d in depths],
    )
    typed_better = err["typed"]["unseen"] < err["untyped"]["unseen"]
    film_degrades = (err["film"]["unseen"] - err["film"]["seen"]) > (err["typed"]["unseen"] - err["typed"]["seen"])
    depth_text = (
        markdown_table(["model", "our error, depth <= 5", "our error, deeper", "thesis code (CLEVR), <= 5",
                        "thesis code (CLEVR), deeper"], depth_rows)
        + "\n\n" + per_depth + "\n\n"
        + f"Typed modules generalise {'better' if typed_better else 'no better'} than untyped ones to unseen depths "
        + ("(as in the thesis)" if typed_better else "(the thesis found them better)")
        + f"; FiLM (parameters: {metrics['parameters']['film']:,} vs {metrics['parameters']['typed']:,} for the "
        + f"NMN) {'degrades faster' if film_degrades else 'does not degrade faster'} than the typed NMN beyond "
        + "the training depths" + (" (as thesis Fig. 4.13)." if film_degrades else " (thesis Fig. 4.13: it does).")
        + " The thesis numbers come from real CLEVR with programs up to 22 modules deep; ours from a small "
        "procedural analogue, so only directions compare."
    )
    easy = metrics["easy_vqa"]
    easy_text = markdown_table(
        ["model", "easy-vqa test accuracy", "train cost (sequential / parallel)"],
        [(k, percent(v), f"{easy['train_seconds'][k]['sequential']:.0f} s / "
          f"{easy['train_seconds'][k]['parallel']:.0f} s") for k, v in easy["accuracy"].items()]
        + [("majority answer", percent(easy["majority_accuracy"]), "-")],
    ) + (
        f"\n\nReal easy-vqa (PyPI `easy-vqa`): the first {easy['n_train']:,} training questions (10 % more held "
        f"out for the SGM score) and {easy['n_test']:,} test questions, images resized to {config.image_size} px, "
        "programs from the rule-based parser. The typed modules (with `not` above `exist`) trained module-wise "
        "along the same plan; the untyped NMN with the geometric prior trained end to end. The thesis has no "
        "easy-vqa number."
    )
    analysis = (format_dependency_table(plan, markdown=True) + "\n\n```\n" + format_training_plan(plan.plan)
                + "\n```\n\nfind stands for the mask-making unit: the image stem with find, relate, and, or. The "
                "untyped regime (`modular`) trains along the same plan although the geometric mean couples the "
                "prior and the answering modules (`modnets analyze nmn-untyped-prior`): the thesis's 'interfaces "
                "untouched' regime.")
    summary = (
        f"The NMN study of thesis chapter 4 ({'quick mode' if config.quick else 'full mode'}, seed {config.seed}, "
        f"{config.backend} backend) on {n_train:,} generated CLEVR-like training questions of depth 2-"
        f"{config.max_train_depth} ({config.image_size} px), tested on {n_test:,} fresh questions of depth 2-"
        f"{config.max_test_depth}, and on the real easy-vqa set. Total time {metrics['total_seconds']:.0f} s."
    )
    return Report(
        name="nmn",
        title="NMN: end to end vs module-wise, neural data types, SGM, depth generalisation, easy-vqa",
        summary=summary,
        headline=headline,
        sections=[("Table 4.2 analogue: against the thesis", table_comment),
                  ("Dependencies and training plan (Table 4.1)", analysis),
                  ("Fig. 4.7 analogue: SGM loss vs full-model loss", sgm_text + "\n\n" + sgm_table),
                  ("Figs 4.12-4.13 analogue: error by program depth", depth_text),
                  ("easy-vqa (real data)", easy_text),
                  ("Data", _data_text(config, metrics))],
        metrics=metrics,
        figures=["error_by_depth.png", "sgm_correlation.png"],
        config=config,
    )


def _slowest(modulewise: dict) -> str:
    seconds = modulewise["module_seconds"]
    name = max(seconds, key=seconds.get)
    return f"{name} ({seconds[name]:.0f} s of {modulewise['sequential_seconds']:.0f} s)"


def _ratio(cost: dict, regime: str) -> str:
    c = cost[regime]
    return f"{100 * c['parallel'] / c['sequential']:.0f} %" if c["sequential"] > 0 else "n/a"


def _data_text(config: Config, metrics: dict) -> str:
    return (
        f"Procedurally generated CLEVR-like data (`modnets.data.make_clevr_like`): {config.image_size}x"
        f"{config.image_size} renders of 2-10 objects, programs over find / relate / and / or / exist / count / "
        f"describe with their question text, answers balanced per question type. Train {config.n_train:,} "
        f"(seed {config.seed}), validation {config.n_valid:,} (seed {config.seed + 20_000}), test "
        f"{config.n_test_per_depth} per depth (seed {config.seed + 10_000}). Data generation took "
        f"{metrics['data_seconds']:.1f} s. Checkpoints: `checkpoints/`; TensorBoard logs: `tensorboard/`."
    )
