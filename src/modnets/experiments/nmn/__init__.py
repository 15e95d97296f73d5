"""Experiment ``nmn``: the NMN study of thesis chapter 4 on generated CLEVR-like scenes and on easy-vqa.

- Table 4.2 analogue: the original (untyped) NMN with the geometric question prior trained end to end, the
  same modules trained module-wise along the training plan (interfaces untouched), and the typed modules
  (sigmoid masks, min / max, probabilities) with the prior added as logits, trained module-wise; test
  accuracy and training cost (sequential and parallel, searches included).
- Figs 4.6-4.7 analogue (``_sgm``): ``find`` units trained through their SGM with varied seeds and
  hyper-parameters, those near the loss-variance Pareto front frozen in an NMN whose answering modules then
  train end to end; Pearson r (bootstrap interval) and Spearman rho between SGM and full-model loss.
- Figs 4.12-4.13 analogue: error by program depth, trained on depth <= 5, for typed and untyped modules
  trained end to end, the module-wise regimes and a FiLM baseline of the typed NMN's parameter count.
- easy-vqa: the typed modules trained module-wise on the real easy-vqa set vs the untyped NMN end to end.

Table 4.2 and the depth study are repeated over ``seeds`` seeds (data and weights) and reported as mean and
spread; the SGM study and easy-vqa run once, on the first seed. With ``data="clevr:PATH"`` Table 4.2, the SGM
study and the depth study draw their questions from the real CLEVR files instead (training and validation
from the train split, the tests from the val split).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..._checks import check_ints
from ..._config import Config as ConfigBase
from ...analysis import (
    dependencies,
    format_dependency_table,
    format_training_plan,
    plot_error_curves,
    plot_search_trials,
    spread,
    spread_by,
)
from ...data import (
    PROGRAM_FAMILIES,
    collate_easy_vqa,
    load_easy_vqa,
)
from ...data import collate_clevr_like as collate
from ...errors import ConfigError
from ...models import QuestionVocabulary, easy_vqa_library, nmn, nmn_assembly
from ...train import (
    Classification,
    FitConfig,
    NMNModulewiseConfig,
    RunDir,
    SearchConfig,
    check_backend,
    fit_objective,
    predict,
    search,
    train_nmn_modulewise,
)
from .._report import Report, markdown_table, percent
from .._report import spread_text as _s
from .._vqa_training import fit_answers, seeded
from ._data import clevr_pools, data_text, study_data
from ._depth import CURVE_LABELS, depth_report, depth_study
from ._sgm import prior_only_accuracy, sgm_study

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


@dataclass
class Config(ConfigBase):
    """Settings of the ``nmn`` experiment (``Config.for_mode(quick)`` gives the two presets).

    ``seeds`` repetitions of Table 4.2 and the depth study use seeds ``seed, seed + 1, ...``; Table 4.2 and the
    SGM study run on the ``"sets"`` program family, the depth study on ``depth_programs`` (``"chains"``: every
    level of depth is a step of reasoning). The depth study trains on ``depth_n_train`` questions with
    ``depth_fit`` (``None``: ``n_train`` and ``fit``): error can only grow with depth once the models answer
    the shallow questions well, which takes more training than Table 4.2's comparison of regimes. The
    reference curve's model trains on every depth 2-``max_test_depth``, depth d drawn with weight
    ``reference_depth_decay ** (d - 2)`` (1: uniform; the deepest programs are the rarest in CLEVR too; real
    CLEVR questions come as the train split has them).
    ``depth_seeds`` (``None``: ``seeds``) repeats the depth study alone over more seeds than Table 4.2: single
    training failures decide a mean over three seeds. The NMNs sit on a loss plateau near 1 nat before their
    ``find`` modules learn to attend, and leave it after a varying number of epochs
    (``scripts/nmn_reference_probe.py`` prints the training and validation loss per epoch); some trainings
    never do, and fit their training questions while the validation loss stays on the plateau (the typed
    NMN of seed 4 in a 6-seed run of 30 epochs). So every depth-study model is validated after each epoch on
    held-out questions of its training depths and kept at its best epoch, and trains ``depth_restarts``
    times from different initial weights, the training of lowest validation loss being the one tested. The
    full preset: 3 seeds, 2 restarts, 30 epochs after a linear learning-rate warm-up of 1,000 steps. It does
    not stop early: the untyped NMN leaves the plateau later than the typed one (epoch 12-14 against 5-10), so
    a patience would cut it short more often, a bias in the typed NMN's favour.
    ``film_width=None`` sizes the FiLM baseline to the typed NMN's parameter count; a model of the question
    alone (no image) trains beside it, the floor FiLM must beat before its error by depth says anything. The
    SGM study trains ``sgm_candidates`` find units through their SGM, keeps the ``sgm_selected`` nearest the
    Pareto front and trains the answering modules around each for ``sgm_full_fit``.

    ``data``: ``None`` for the generated CLEVR-like data, or ``"clevr:PATH"`` for the real CLEVR v1.0 folder
    (:func:`~modnets.data.load_clevr`): the first ``clevr_questions`` questions of the train and of the val
    split that the NMN modules can express are read, images squashed to ``image_size``; each seed draws its
    training and validation questions from the train split and its test questions from the val split, of
    the depths each study asks for (``depth_programs`` is then unused).
    """

    quick: bool = False
    seed: int = 0
    seeds: int = 3
    image_size: int = 32
    n_train: int = 10000
    n_valid: int = 1500
    max_train_depth: int = 5
    max_test_depth: int = 20
    depth_programs: str = "chains"
    n_test_per_depth: int = 300
    hidden: int = 64
    question_hidden: int = 64
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=6, batch_size=64, lr=2e-3))
    depth_n_train: int | None = None
    depth_fit: FitConfig | None = None
    reference_depth_decay: float = 0.85
    depth_seeds: int | None = None
    depth_restarts: int = 1
    modulewise: NMNModulewiseConfig = field(default_factory=lambda: NMNModulewiseConfig(
        find=FitConfig(epochs=6, batch_size=64, lr=2e-3), heads=FitConfig(epochs=15, batch_size=128, lr=3e-3),
        prior=FitConfig(epochs=4, batch_size=64, lr=3e-3), search_trials=6, search_examples=2000))
    film_width: int | None = None
    film_blocks: int = 3
    sgm_candidates: int = 40
    sgm_selected: int = 20
    sgm_examples: int = 2000
    sgm_max_epochs: int = 4
    sgm_full_fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=3, batch_size=64, lr=2e-3))
    easy_vqa_train: int = 8000
    easy_vqa_test: int = 2000
    easy_vqa_fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=4, batch_size=64, lr=2e-3))
    backend: str = "sequential"
    ray_address: str | None = None
    data: str | None = None
    clevr_questions: int = 100_000

    def __post_init__(self) -> None:
        if self.data is not None and (not isinstance(self.data, str) or not self.data.startswith("clevr:")
                                      or len(self.data) == len("clevr:")):
            raise ConfigError(f"Config.data must be None (generated CLEVR-like data) or 'clevr:PATH' (the CLEVR v1.0 "
                              f"folder), got {self.data!r}")
        if self.max_train_depth < 2:
            raise ConfigError(f"max_train_depth must be >= 2, got {self.max_train_depth}")
        if self.max_test_depth < self.max_train_depth:
            raise ConfigError(
                f"max_test_depth must be >= max_train_depth ({self.max_train_depth}), got {self.max_test_depth}"
            )
        check_ints(self, "seeds", "n_train", "n_valid", "n_test_per_depth", "hidden", "question_hidden",
                   "film_blocks", "sgm_examples", "sgm_max_epochs", "easy_vqa_train", "easy_vqa_test",
                   "clevr_questions")
        if self.film_width is not None:
            check_ints(self, "film_width")
        if self.depth_n_train is not None:
            check_ints(self, "depth_n_train")
        check_ints(self, "depth_restarts")
        if self.depth_seeds is not None:
            check_ints(self, "depth_seeds")
            if self.depth_seeds < self.seeds:
                raise ConfigError(f"depth_seeds must be None or >= seeds ({self.seeds}), got {self.depth_seeds}")
        if not 0 < self.reference_depth_decay <= 1:
            raise ConfigError(f"reference_depth_decay must be in (0, 1], got {self.reference_depth_decay!r}")
        if isinstance(self.depth_fit, dict):
            self.depth_fit = FitConfig.from_dict(self.depth_fit)
        check_ints(self, "sgm_candidates", "sgm_selected", minimum=3)
        if self.sgm_selected > self.sgm_candidates:
            raise ConfigError(f"sgm_selected ({self.sgm_selected}) must be <= sgm_candidates ({self.sgm_candidates})")
        check_backend(self.backend)
        if self.depth_programs not in PROGRAM_FAMILIES:
            raise ConfigError(f"depth_programs must be one of {', '.join(PROGRAM_FAMILIES)}, got "
                              f"{self.depth_programs!r}")

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
                film_blocks=2, seeds=1, sgm_candidates=8, sgm_selected=5, sgm_examples=800, sgm_max_epochs=2,
                sgm_full_fit=FitConfig(epochs=1, batch_size=64, lr=3e-3, seed=seed),
                easy_vqa_train=1500, easy_vqa_test=500,
                easy_vqa_fit=FitConfig(epochs=2, batch_size=64, lr=3e-3, seed=seed),
                # the NMNs leave their loss plateau after some 1,000-2,000 steps: fewer would show no effect
                depth_n_train=8000, depth_fit=FitConfig(epochs=16, batch_size=64, lr=3e-3, warmup_steps=200, seed=seed),
            )
        return cls(seed=seed, fit=FitConfig(epochs=6, batch_size=64, lr=2e-3, seed=seed),
                   depth_n_train=20000,
                   depth_fit=FitConfig(epochs=30, batch_size=64, lr=3e-3, warmup_steps=1000, seed=seed),
                   depth_restarts=2,
                   sgm_full_fit=FitConfig(epochs=6, batch_size=64, lr=2e-3, seed=seed),
                   easy_vqa_fit=FitConfig(epochs=4, batch_size=64, lr=2e-3, seed=seed))

    @property
    def seed_list(self) -> list[int]:
        """The seeds of the repetitions."""
        return [self.seed + i for i in range(self.seeds)]

    @property
    def depth_seed_list(self) -> list[int]:
        """The seeds of the depth study: the repetitions' and, with ``depth_seeds``, more."""
        return [self.seed + i for i in range(self.depth_seeds or self.seeds)]

    @property
    def reference_weights(self) -> tuple[float, ...] | None:
        """The reference's relative frequency of each depth 2..``max_test_depth`` (``None``: uniform)."""
        if self.reference_depth_decay == 1:
            return None
        return tuple(self.reference_depth_decay ** (d - 2) for d in range(2, self.max_test_depth + 1))

    @property
    def depth_training(self) -> tuple[int, FitConfig]:
        """The depth study's number of training questions and its training settings."""
        return self.depth_n_train or self.n_train, self.depth_fit or self.fit


def run(config: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Report:
    """Run the whole study; write plots, logs and checkpoints into ``out_dir`` (one ``seedS`` folder of logs
    and checkpoints per seed); return the report (``resume=True``: every training continues from its
    checkpoints in ``out_dir``)."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    rundir = RunDir(out, resume=resume, progress=progress)
    plan = dependencies(nmn_assembly(True, prior=True))
    pools = clevr_pools(config)
    seeds = []
    for seed in config.seed_list:
        measured, data = _seed_study(config, seed, plan, rundir.sub(f"seed{seed}"), pools)
        seeds.append(measured)
        if seed == config.seed:
            train, valid, vocab = data
    first = seeds[0]
    sgm = sgm_study(config, train, valid, rundir.sub("sgm").quiet(), out)
    prior_only = prior_only_accuracy(config, train, valid, vocab, rundir.sub("sgm").quiet())
    easy = _easy_vqa(config, rundir.sub("easy_vqa"))

    depth_only = [depth_study(config, seed, rundir.sub(f"seed{seed}"), pools)
                  for seed in config.depth_seed_list[len(seeds):]]
    depth_runs = [*seeds, *depth_only]
    curves = {k: spread_by([s["accuracy_by_depth"][k] for s in depth_runs]) for k in CURVE_LABELS}
    plot_error_curves({CURVE_LABELS[k]: v for k, v in curves.items()}, out / "error_by_depth.png",
                      title=f"error by program depth (trained on depth <= {config.max_train_depth})",
                      trained_up_to=config.max_train_depth)
    metrics = {
        "seeds": config.seed_list,
        "per_seed": seeds,
        "accuracy": {r: spread([s["accuracy"][r] for s in seeds]).to_dict() for r in REGIMES},
        "train_seconds": {r: {k: spread([s["train_seconds"][r][k] for s in seeds]).to_dict()
                              for k in ("sequential", "parallel")} for r in REGIMES},
        "depth_seeds": config.depth_seed_list,
        "depth_only_per_seed": depth_only,
        "error_seen_unseen": {k: {part: spread([s["error_seen_unseen"][k][part] for s in depth_runs]).to_dict()
                                  for part in ("seen", "unseen")} for k in CURVE_LABELS},
        "error_by_depth": {k: {str(d): {"mean": 1 - v.mean, "std": v.std, "n": v.n} for d, v in c.items()}
                           for k, c in curves.items()},
        "depth_epochs": {k: {part: spread([s["epochs"][k][part] for s in depth_runs]).to_dict()
                             for part in ("trained", "best")} for k in CURVE_LABELS},
        "depth_restart_valid_losses": {k: [s["epochs"][k]["restart_valid_losses"] for s in depth_runs]
                                       for k in CURVE_LABELS},
        "parameters": first["parameters"],
        "answer_module_share": first["answer_module_share"],
        "sgm": sgm,
        "sgm_pearson_r": sgm["correlation"]["r"],
        "prior_only_accuracy": prior_only,
        "easy_vqa_accuracy": easy["accuracy"],
        "easy_vqa": easy,
        "total_seconds": time.perf_counter() - t0,
    }
    if pools is not None:
        metrics["clevr"] = {split: {"questions": len(pool), "skipped": pool.skipped, "images": len(pool.image_paths)}
                            for split, pool in zip(("train", "val"), pools, strict=True)}
    return _report(config, metrics, plan, first["n_train"], first["n_test"], curves)


def _seed_study(config: Config, seed: int, plan, rundir: RunDir, pools=None) -> tuple[dict, tuple]:
    """Table 4.2 and the depth curves of one seed (its own data and weights): the measurements, and the
    seed's Table 4.2 training and validation data and question vocabulary (for the SGM study)."""
    t0 = time.perf_counter()
    seen = tuple(range(2, config.max_train_depth + 1))
    train, valid, test = study_data(config, seed, "sets", seen, seen, pools=pools)
    vocab = QuestionVocabulary.build(train.questions)
    data_seconds = time.perf_counter() - t0
    accuracy, cost, modulewise = {}, {}, {}
    searches: dict[str, list] = {}
    # the module-wise regimes first: the end-to-end search gets the time their searches took
    for regime in sorted(REGIMES, key=lambda r: not REGIMES[r][2]):
        typed, prior, modular = REGIMES[regime]

        def build(typed=typed, prior=prior):
            return nmn(typed, image_size=config.image_size, hidden=config.hidden, prior=prior, questions=vocab,
                       question_hidden=config.question_hidden)

        torch.manual_seed(seed)
        model = build()
        if modular:
            done = train_nmn_modulewise(model, train, plan=plan.plan, collate=collate, config=config.modulewise,
                                        run=rundir.sub(regime), valid=valid, seed=seed,
                                        backend=config.backend, address=config.ray_address)
            modulewise[regime] = done.to_dict()
            cost[regime] = {"sequential": done.run.timings.sequential_seconds,
                            "parallel": done.run.timings.parallel_seconds}
            if regime == "modular_typed":
                searches.update({name: found.trials for name, found in done.searches.items()})
        else:
            budget = sum(f["seconds"] for f in modulewise["modular_typed"]["searches"].values())
            fit_config, found = seeded(config.fit, seed), None
            if budget > 0:
                found = _end_to_end_search(config, build, train, valid, seed, budget, rundir.sub(regime))
                fit_config = FitConfig(**{**fit_config.to_dict(), "lr": found.best_params["lr"]})
                searches["end to end"] = found.trials
            seconds = fit_answers(model, train, fit_config, rundir, regime).seconds + (found.seconds if found else 0.0)
            cost[regime] = {"sequential": seconds, "parallel": seconds, "search": found.seconds if found else 0.0,
                            "lr": fit_config.lr}
        accuracy[regime] = float((predict(model, test, collate=collate) == test.answers).float().mean())

    roots = [p.name for p in train.programs]
    figures = []
    if searches:
        plot_search_trials(searches, rundir.folder("") / "searches.png",
                           title=f"per-module and end-to-end learning-rate searches, seed {seed} (Figs 4.8 / 4.11)")
        figures.append(f"seed{seed}/searches.png")
    depth = depth_study(config, seed, rundir.sub("depth"), pools)
    measured = {
        "seed": seed,
        "data_seconds": data_seconds,
        "accuracy": accuracy,
        "train_seconds": {**cost, **depth.pop("train_seconds")},
        "modulewise": modulewise,
        **depth,
        "answer_module_share": {name: roots.count(name) / len(roots) for name in sorted(set(roots))},
        "n_train": len(train),
        "n_test": len(test),
        "figures": figures,
    }
    return measured, (train, valid, vocab)


def _end_to_end_search(config: Config, build, train, valid, seed: int, budget: float, rundir: RunDir):
    """Search the end-to-end learning rate for ``budget`` seconds (the module-wise searches' time), each trial a
    fresh model trained ``search_epochs`` on the first ``search_examples`` questions, scored on ``valid``."""
    settings = config.modulewise
    subset = train.subset(range(min(settings.search_examples, len(train))))

    def objective(trial):
        torch.manual_seed(seed + trial.number)
        return Classification(build(), target="answer")

    def fit_config(trial):
        return FitConfig(**{**seeded(config.fit, seed).to_dict(), "epochs": settings.search_epochs,
                            "lr": trial.suggest_float("lr", *settings.search_lr, log=True)})

    folder = rundir.folder("search")
    if not rundir.resume:
        shutil.rmtree(folder, ignore_errors=True)
    # a resumed run continues the stored study for what is left of the budget, or not at all
    study = SearchConfig(trials=1000, budget=budget, seed=seed, study_name="end_to_end", load_if_exists=rundir.resume)
    return search(fit_objective(objective=objective, fit_config=fit_config, train=subset, valid=valid,
                                collate=collate), config=study, directory=folder, progress=rundir.progress)


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
            seconds[name] = {"sequential": fit_answers(model, fit_on, config.easy_vqa_fit, rundir, name,
                                                collate=collate_easy_vqa).seconds}
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


def _find_verdict(accuracies: list[float], prior_only: float) -> str:
    """Whether the full models with a frozen find unit answer more than a question-only model does."""
    below = sum(a < prior_only for a in accuracies)
    span = f"{percent(min(accuracies))}-{percent(max(accuracies))}"
    if below == len(accuracies):
        return (f"Every full model answered fewer of them ({span}): the answering modules got nothing from the find "
                f"units they could use beyond what the question alone tells, so the full-model loss has nothing of "
                f"find's quality to follow. ")
    return f"The full models answered {span} ({below} of {len(accuracies)} below the question-only model). "


def _report(config: Config, metrics: dict, plan, n_train: int, n_test: int, curves: dict) -> Report:
    acc, cost, n = metrics["accuracy"], metrics["train_seconds"], len(metrics["seeds"])
    headline = ("Mean ± standard deviation over the seeds.\n\n" if n > 1 else "") + markdown_table(
        ["regime", f"our test acc. (depth 2-{config.max_train_depth})", "thesis (VQA v1)",
         "cost, sequential", "cost, parallel"],
        [(REGIME_LABELS[r], _s(acc[r], percent=True), percent(PAPER_ACCURACY[r], 2),
          _s(cost[r]["sequential"], "{:.0f}", unit=" s"), _s(cost[r]["parallel"], "{:.0f}", unit=" s"))
         for r in REGIMES],
    )
    order = sorted(REGIMES, key=lambda r: acc[r]["mean"])
    paper_order = sorted(REGIMES, key=lambda r: PAPER_ACCURACY[r])
    gaps = [acc[b]["mean"] - acc[a]["mean"] for a, b in zip(order, order[1:], strict=False)]
    noise = max(acc[r]["std"] for r in REGIMES)
    resolved = n > 1 and all(g > noise for g in gaps)
    share = metrics["answer_module_share"]
    first = metrics["per_seed"][0]
    table_comment = (
        ("Our numbers come from generated CLEVR-like scenes (2D renders, programs from the data)" if config.data is None
         else "Our numbers come from real CLEVR questions (3D renders, CLEVR's programs mapped onto the modules)")
        + ", not VQA v1 (real photos, parsed questions, a pretrained VGG), so only the ordering of the regimes is "
        "comparable. "
        f"Our ordering by mean, worst to best: {', '.join(order)}; the thesis's: {', '.join(paper_order)}"
        + (" (the same)" if order == paper_order else " (different)")
        + (f"; every gap between neighbours is larger than the largest seed spread ({percent(noise)})." if resolved
           else "; with one seed there is no spread to judge it by." if n == 1
           else f"; some gaps are within the seed spread ({percent(noise)}), so that part of the ordering is not a "
                "result.")
        + " Module-wise (typed), the slowest module of the first seed is "
        + f"{_slowest(first['modulewise']['modular_typed'])}. "
        + _search_text(config, first)
        + " Share of the training questions per answering module: "
        + ", ".join(f"{k} {percent(v)}" for k, v in share.items())
        + " (the thesis's VQA v1 split: describe 64 %, measure 36 %)."
        + (" Quick mode trains on a few thousand questions for one or two epochs: its accuracies are close to "
           "chance and its orderings are noise; read the full run's." if config.quick else "")
    )
    sgm = metrics["sgm"]
    corr = sgm["correlation"]
    chosen = [c for c in sgm["candidates"] if c["selected"]]
    lo, hi = sgm["full_loss_range"]
    sgm_text = (
        f"{len(sgm['candidates'])} versions of the find unit (stem + find + relate + and / or) trained through the "
        f"SGM on {config.sgm_examples} examples, each with its own seed, learning rate (10^-3.5..10^-2), SGM rank "
        f"(2-16) and epochs (1-{config.sgm_max_epochs}); each scored by the SGM's held-out loss and MC-dropout "
        f"variance. The {len(chosen)} nearest the loss-variance Pareto front were selected (Fig. 4.6, "
        f"`sgm_pareto.png`); each was frozen in a typed NMN without the question prior whose answering modules "
        f"then trained end to end ({config.sgm_full_fit.epochs} epoch(s) on {n_train:,} questions, the same "
        f"initial weights for every version). Pearson r = {corr['r']:.2f} (95 % bootstrap interval "
        f"[{corr['r_low']:.2f}, {corr['r_high']:.2f}], p = {corr['p_value']:.2g}), Spearman rho = "
        f"{corr['spearman']:.2f}, between the SGM's held-out loss and the full model's held-out loss over the "
        f"selected versions; the thesis measured r = {PAPER_PEARSON[0]} (p = {PAPER_PEARSON[1]:g}) on VQA v1. "
        f"The full-model losses span {lo:.3f}-{hi:.3f}. A question-only model (no image) answers "
        f"{percent(metrics['prior_only_accuracy'])} of the held-out questions: the part of the answers find "
        "cannot move. "
        + _find_verdict([c["full_accuracy"] for c in chosen], metrics["prior_only_accuracy"])
        + ("Our correlation reaches the thesis's." if corr["r"] >= PAPER_PEARSON[0] else
           "Our correlation is positive but weaker than the thesis's." if corr["r"] > 0 else
           "We find no positive correlation.")
        + (" Its interval includes 0: not a result." if corr["r_low"] <= 0 <= corr["r_high"] else "")
    )
    sgm_table = markdown_table(
        ["version", "epochs", "lr", "SGM rank", "SGM loss", "MC-dropout variance", "selected", "full-model loss",
         "full-model accuracy"],
        [(c["index"], c["epochs"], f"{c['lr']:.2g}", c["rank"], f"{c['sgm_loss']:.3f}", f"{c['sgm_variance']:.3g}",
          "yes" if c["selected"] else "", f"{c['full_loss']:.3f}" if c["selected"] else "",
          percent(c["full_accuracy"]) if c["selected"] else "") for c in sgm["candidates"]],
    )
    depth_text = depth_report(config, metrics, curves)
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
        "easy-vqa number. One seed."
    )
    analysis = (format_dependency_table(plan, markdown=True) + "\n\n```\n" + format_training_plan(plan.plan)
                + "\n```\n\nfind stands for the mask-making unit: the image stem with find, relate, and, or. The "
                "untyped regime (`modular`) trains along the same plan although the geometric mean couples the "
                "prior and the answering modules (`modnets analyze nmn-untyped-prior`): the thesis's 'interfaces "
                "untouched' regime.")
    summary = (
        f"The NMN study of thesis chapter 4 ({'quick mode' if config.quick else 'full mode'}, {n} seed"
        f"{'s' if n > 1 else ''}: {', '.join(map(str, metrics['seeds']))}; {config.backend} backend) on "
        f"{n_train:,} {'generated CLEVR-like' if config.data is None else 'real CLEVR'} training questions of "
        f"depth 2-{config.max_train_depth} "
        f"({config.image_size} px) per seed, tested on {n_test:,} fresh questions of the same depths (Table 4.2) and "
        f"on questions of depth 2-{config.max_test_depth} (the depth study), and on the real easy-vqa set. Total "
        f"time {metrics['total_seconds']:.0f} s."
    )
    departures = "\n".join(f"- {d}" for d in [
        "Generated CLEVR-like scenes and programs instead of VQA v1 / CLEVR; programs are given, not parsed."
        if config.data is None else
        "Real CLEVR instead of VQA v1 for Table 4.2; only the questions the NMN modules can express (no materials, "
        "comparisons or same_*), with CLEVR's programs mapped onto the modules (given, not parsed), images "
        f"squashed to {config.image_size} px.",
        "Only learning rates (and find's SGM rank) are searched, with a small trial budget per module; the "
        "thesis does not list its search spaces.",
        f"The SGM study runs on the first seed only, with {len(sgm['candidates'])} candidates (the thesis code: "
        "100).",
        "The full model of the SGM study has no question prior, so that its answers depend on find.",
        f"The depth study trains every model {config.depth_restarts} time{'s' * (config.depth_restarts != 1)} "
        "per seed and tests the training of lowest validation loss, each kept at its best epoch (the thesis "
        "reports one training per model); its FiLM has the typed NMN's parameter count and training budget, "
        "far below Perez et al.'s.",
    ])
    return Report(
        name="nmn",
        title="NMN: end to end vs module-wise, neural data types, SGM, depth generalisation, easy-vqa",
        summary=summary,
        headline=headline,
        sections=[("Table 4.2 analogue: against the thesis", table_comment),
                  ("Dependencies and training plan (Table 4.1)", analysis),
                  ("Figs 4.6-4.7 analogue: SGM loss vs full-model loss", sgm_text + "\n\n" + sgm_table),
                  ("Figs 4.12-4.13 analogue: error by program depth", depth_text),
                  ("easy-vqa (real data)", easy_text),
                  ("Departures from the thesis", departures),
                  ("Data", data_text(config, metrics))],
        metrics=metrics,
        figures=["error_by_depth.png", *sgm["figures"], *first["figures"]],
        config=config,
    )


def _search_text(config: Config, first: dict) -> str:
    trials = config.modulewise.search_trials
    if not trials:
        return "No module was searched (search_trials = 0). "
    e2e = first["train_seconds"]["end_to_end"]
    searched = first["modulewise"]["modular_typed"]["searches"]
    return (
        f"Every module was searched before it trained, {trials} Optuna trials each (find: learning rate and SGM "
        f"rank on its SGM's validation loss; the question prior and each answering module: learning rate on "
        f"its own validation loss, the answering modules on validation questions run through the trained "
        f"find), then trained with its best learning rate: "
        + ", ".join(f"{k} {v['best_params']['lr']:.2g}" for k, v in searched.items())
        + f" (first seed). The end-to-end regime searched its learning rate for as long as the typed module-wise "
        f"searches took ({e2e['search']:.0f} s on the first seed), each trial the whole model on the same "
        f"examples, and trained with lr {e2e['lr']:.2g}; its cost includes that search. The module-wise costs "
        "include their searches and writing the caches. Fig. `searches.png`: every trial of every search "
        "(thesis Figs 4.8 / 4.11). "
    )


def _slowest(modulewise: dict) -> str:
    seconds = modulewise["module_seconds"]
    name = max(seconds, key=seconds.get)
    return f"{name} ({seconds[name]:.0f} s of {modulewise['sequential_seconds']:.0f} s)"


def _ratio(cost: dict, regime: str) -> str:
    c = cost[regime]
    return f"{100 * c['parallel'] / c['sequential']:.0f} %" if c["sequential"] > 0 else "n/a"
