"""Experiment ``layouts``: how the modules connect, learned (research note seed 000; thesis 5.3; N2NMN).

A typed NMN answers generated CLEVR-like questions three ways, with the same modules, data and test set:

- **gold programs**: the layouts come from the data (the upper reference: the modules alone learn);
- **from answers alone**: a :class:`~modnets.compose.ProgramPolicy` reads the question and writes the
  program, learned with the modules from the answers only (:class:`~modnets.train.ProgramSearch`: the top-K
  buffer by default, REINFORCE or EM by configuration);
- **cloned, then answers**: the policy and the modules first learn from the gold programs of a fraction of
  the training questions (:class:`~modnets.train.ProgramCloning`, N2NMN's behaviour cloning), then go on
  from the answers of all of them with the same search, still cloning that fraction's gold programs
  (``keep_gold``; without it, the search sees answers only, as N2NMN's policy search after cloning).

On held-out questions the report gives the answer accuracy, how often the predicted program is the gold one
(exact match) and how often it gives the gold answer when run by the symbolic oracle on the scene
(execution-equivalent: :func:`modnets.data.execute`), the policy's entropy H(A|X) over whole programs and
the training time per step, and the accuracy by program depth; each arm runs with the typed modules and,
when ``libraries`` lists it, the untyped ones (the thesis's claim that types help composition), over
``seeds`` seeds, reported as mean and spread.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._checks import check_ints
from .._config import Config as ConfigBase
from ..analysis import Spread, accuracy_by, majority_baseline, plot_error_curves, spread, spread_by
from ..compose import ProgramPolicy, ProgramSpace
from ..data import ANSWERS, ClevrLikeConfig, ClevrLikeDataset, execute, make_clevr_like
from ..data import collate_clevr_like as collate
from ..errors import ConfigError, ModnetsError
from ..models import QuestionEncoder, QuestionVocabulary, nmn, nmn_library
from ..train import (
    Classification,
    FitConfig,
    FitResult,
    ProgramCloning,
    ProgramObjective,
    ProgramSearch,
    ProgramSearchConfig,
    RunDir,
    fit,
    predict,
)
from ..types import Logits, Probs
from ._report import Report, markdown_table, percent
from ._vqa_training import seeded

__all__ = ["Config", "run"]

ARMS = ("gold", "answers", "cloned")
LABELS = {"gold": "gold programs (given)", "answers": "learned from answers alone",
          "cloned": "cloned from gold, then answers"}
#: The module libraries: neural data types (sigmoid masks, probabilities) or the original untyped interfaces.
LIBRARIES = ("typed", "untyped")
#: The modules of the default (``sets``) program family.
MODULES = ("find", "relate", "and", "or", "exist", "count", "describe")
#: The share of the gold-program accuracy the cloned arm is meant to reach.
TARGET_SHARE = 0.9
#: Measures of each arm on the test questions.
MEASURES = ("accuracy", "exact_match", "execution_equivalent", "entropy")


@dataclass
class Config(ConfigBase):
    """Settings of the ``layouts`` experiment (``Config.for_mode(quick)`` gives the two presets).

    Attributes:
        seed: the first seed; seeds: repetitions with seeds ``seed, seed + 1, ...`` (each its own data and
            weights).
        libraries: the module libraries each arm runs with, from :data:`LIBRARIES`.
        depths: program depths of the generated questions.
        n_train: training questions; n_test: held-out questions, on other scenes.
        gold_fraction: the share of training questions whose gold program the cloned arm learns from.
        keep_gold: the cloned arm keeps cloning those gold programs during its search on the answers.
        hidden: width of the NMN modules; stem_channels: the image stem's stages.
        policy_hidden: width of the question encoder and of the policy's GRU.
        max_size: most calls in a program the policy may write; ``None``: the largest gold program's.
        search: the program search of the answers-alone arm, and of the cloned arm unless ``cloned_search``.
        cloned_search: the cloned arm's search (``None``: ``search``). Generalised EM with the joint score by
            default: the cloned policy's own log p(a|x) keeps its programs near the gold ones while the modules
            are still weak (ranked by log p(y|x,a) alone, or with a buffer of 2, the programs drifted from the
            gold ones and the arm answered less well; ``scripts/layouts_probe.py``).
        fit_gold: training of the gold-program NMN; fit_search: the program search (both learned arms);
        fit_clone: the cloning stage of the cloned arm (on its share of the training questions).
        refit: the cloned arm's last stage (``None``: none): fresh modules trained, as the gold arm's, on the
            programs its policy writes for the training questions (greedy), then run on the programs it writes
            for the test questions. The search's own modules learn while the programs move under them and
            answered less well than modules trained on fixed programs (``scripts/layouts_modules_probe.py``).
    """

    quick: bool = False
    seed: int = 0
    seeds: int = 3
    libraries: tuple[str, ...] = LIBRARIES
    image_size: int = 32
    depths: tuple[int, ...] = (2, 3, 4)
    n_train: int = 10000
    n_test: int = 1000
    gold_fraction: float = 0.1
    keep_gold: bool = True
    hidden: int = 32
    stem_channels: tuple[int, ...] = (16, 32)
    policy_hidden: int = 64
    max_size: int | None = None
    search: ProgramSearchConfig = field(
        default_factory=lambda: ProgramSearchConfig(buffer_size=2, samples=4, score="likelihood", entropy=0.01))
    cloned_search: ProgramSearchConfig | None = field(
        default_factory=lambda: ProgramSearchConfig.em(samples=4, score="joint"))
    fit_gold: FitConfig = field(default_factory=lambda: FitConfig(epochs=20, batch_size=64, lr=2e-3))
    fit_clone: FitConfig = field(default_factory=lambda: FitConfig(epochs=40, batch_size=32, lr=2e-3))
    fit_search: FitConfig = field(default_factory=lambda: FitConfig(epochs=20, batch_size=64, lr=2e-3))
    refit: FitConfig | None = field(default_factory=lambda: FitConfig(epochs=20, batch_size=64, lr=2e-3))

    def __post_init__(self) -> None:
        check_ints(self, "seeds", "n_train", "n_test", "hidden", "policy_hidden")
        self.libraries = tuple(self.libraries)
        if not self.libraries or len(set(self.libraries)) < len(self.libraries) or not set(self.libraries) <= set(
                LIBRARIES):
            raise ConfigError(f"Config.libraries must be distinct names from {LIBRARIES}, got {self.libraries!r}")
        self.depths = tuple(self.depths)
        if not self.depths or not all(isinstance(d, int) and d >= 2 for d in self.depths):
            raise ConfigError(f"Config.depths must be a non-empty tuple of ints >= 2, got {self.depths!r}")
        self.stem_channels = tuple(self.stem_channels)
        if not self.stem_channels or not all(isinstance(c, int) and c >= 1 for c in self.stem_channels):
            raise ConfigError(f"Config.stem_channels must be a non-empty tuple of ints >= 1, got "
                              f"{self.stem_channels!r}")
        if self.image_size % 2 ** len(self.stem_channels) or self.image_size < 16:
            raise ConfigError(f"Config.image_size must be >= 16 and divisible by 2**len(stem_channels), got "
                              f"{self.image_size!r}")
        if not 0.0 < self.gold_fraction <= 1.0:
            raise ConfigError(f"Config.gold_fraction must be in (0, 1], got {self.gold_fraction!r}")
        if self.max_size is not None:
            check_ints(self, "max_size")
        if isinstance(self.cloned_search, dict):
            self.cloned_search = ProgramSearchConfig.from_dict(self.cloned_search)
        if isinstance(self.refit, dict):
            self.refit = FitConfig.from_dict(self.refit)

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0) -> Config:
        if quick:
            return cls(
                quick=True, seed=seed, seeds=1, libraries=("typed",), n_train=3000, n_test=500,
                fit_gold=FitConfig(epochs=15, batch_size=64, lr=3e-3, seed=seed),
                fit_clone=FitConfig(epochs=30, batch_size=32, lr=3e-3, seed=seed),
                fit_search=FitConfig(epochs=15, batch_size=64, lr=3e-3, seed=seed),
                refit=FitConfig(epochs=15, batch_size=64, lr=3e-3, seed=seed),
            )
        return cls(seed=seed, fit_gold=FitConfig(epochs=20, batch_size=64, lr=2e-3, seed=seed),
                   fit_clone=FitConfig(epochs=40, batch_size=32, lr=2e-3, seed=seed),
                   fit_search=FitConfig(epochs=20, batch_size=64, lr=2e-3, seed=seed),
                   refit=FitConfig(epochs=20, batch_size=64, lr=2e-3, seed=seed))

    @property
    def seed_list(self) -> list[int]:
        """The seeds of the repetitions."""
        return [self.seed + i for i in range(self.seeds)]


def run(config: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Report:
    """Train the three arms per library and seed, evaluate them on held-out questions; return the report
    (checkpoints and ``accuracy_by_depth.png`` go into ``out_dir``; ``resume=True`` continues from them)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    rundir = RunDir(out, resume=resume, progress=progress)
    per_seed = [_run_seed(config, seed, rundir.sub(f"seed{seed}")) for seed in config.seed_list]
    metrics: dict = {"seeds": config.seed_list, "per_seed": per_seed,
                     **{measure: {lib: {arm: spread([s["libraries"][lib][arm][measure] for s in per_seed]).to_dict()
                                        for arm in ARMS} for lib in config.libraries} for measure in MEASURES},
                     "share_of_gold": {lib: {arm: spread([_share(s["libraries"][lib], arm) for s in per_seed])
                                             .to_dict() for arm in ARMS} for lib in config.libraries},
                     "clone_after": {lib: {measure: spread([s["libraries"][lib]["cloned"]["clone"]["after"][measure]
                                                            for s in per_seed]).to_dict() for measure in MEASURES}
                                     for lib in config.libraries},
                     "accuracy_majority_answer": spread([s["accuracy_majority_answer"] for s in per_seed]).to_dict()}
    if config.refit is not None:
        metrics["cloned_search_accuracy"] = {lib: spread([s["libraries"][lib]["cloned"]["search"]["accuracy"]
                                                          for s in per_seed]).to_dict() for lib in config.libraries}
    curves = {f"{lib}, {LABELS[arm]}": spread_by([s["libraries"][lib][arm]["accuracy_by_depth"] for s in per_seed])
              for lib in config.libraries for arm in ARMS}
    plot_error_curves(curves, out / "accuracy_by_depth.png", title="error by program depth (held-out questions)")
    metrics["accuracy_by_depth"] = {label: {d: c.to_dict() for d, c in curve.items()}
                                    for label, curve in curves.items()}
    metrics["total_seconds"] = time.perf_counter() - t0
    return _report(config, metrics)


def _share(arms: dict, arm: str) -> float:
    """An arm's accuracy as a share of the gold-program arm's (NaN when that is 0)."""
    gold = arms["gold"]["accuracy"]
    return arms[arm]["accuracy"] / gold if gold > 0 else math.nan


@dataclass
class SeedData:
    """One seed's questions: ``train`` and ``test``, the ``given`` training rows whose gold programs the cloned
    arm sees, and the program-size bound ``max_size`` (the largest gold program's: ``gold_max_size``)."""

    train: ClevrLikeDataset
    test: ClevrLikeDataset
    given: torch.Tensor
    max_size: int
    gold_max_size: int


def seed_data(config: Config, seed: int) -> SeedData:
    """The questions of one seed (data seeds ``100 seed + 1`` and ``+ 2``); also used by
    ``scripts/layouts_probe.py``."""
    train, test = (make_clevr_like(ClevrLikeConfig(n_examples=n, depths=config.depths, image_size=config.image_size,
                                                   seed=seed * 100 + offset))
                   for n, offset in ((config.n_train, 1), (config.n_test, 2)))
    gold_size = max(p.size for p in (*train.programs, *test.programs))
    n_gold = max(1, round(config.gold_fraction * len(train)))
    given = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n_gold]
    return SeedData(train, test, given, config.max_size or gold_size, gold_size)


def _run_seed(config: Config, seed: int, rundir: RunDir) -> dict:
    """Every library's three arms on one seed's data."""
    t0 = time.perf_counter()
    data = seed_data(config, seed)
    train, test = data.train, data.test
    kinds = [p.key if p.name == "describe" else p.name for p in train.programs]
    test_kinds = [p.key if p.name == "describe" else p.name for p in test.programs]
    measured = {"seed": seed, "data_seconds": time.perf_counter() - t0, "max_size": data.max_size,
                "gold_max_size": data.gold_max_size, "n_gold": len(data.given), "n_train": len(train),
                "n_test": len(test), "accuracy_majority_answer": float(majority_baseline(
                    train.answers, kinds, test.answers, test_kinds).float().mean())}
    measured["libraries"] = {lib: _arms(config, lib == "typed", seed, data, rundir.sub(lib))
                             for lib in config.libraries}
    return measured


def _arms(config: Config, typed: bool, seed: int, data: SeedData, rundir: RunDir) -> dict:
    """The three arms with one library: (a) gold programs, (b) from answers alone, (c) cloned from the gold
    programs of the ``data.given`` training questions, then answers."""
    train, test = data.train, data.test
    torch.manual_seed(seed)
    model = _nmn(config, typed)
    result = fit(Classification(model, target="answer"), train, config=seeded(config.fit_gold, seed),
                 collate=collate, run=rundir, name="gold")
    correct = predict(Classification(model, target="answer"), test, collate=collate) == test.answers
    gold = {"accuracy": float(correct.float().mean()), "exact_match": 1.0, "execution_equivalent": 1.0,
            "entropy": 0.0, "accuracy_by_depth": accuracy_by(correct, test.depths), **_cost(result)}
    return {"gold": gold, **{arm: learned_arm(config, arm, typed, seed, data, rundir) for arm in ("answers", "cloned")}}


def learned_arm(config: Config, arm: str, typed: bool, seed: int, data: SeedData, rundir: RunDir) -> dict:
    """One learned arm (``"answers"`` or ``"cloned"``) trained on ``data.train`` and measured on ``data.test``;
    also used by ``scripts/layouts_probe.py``."""
    train, test = data.train, data.test
    torch.manual_seed(seed + 1)
    _, parts = arm_parts(config, typed, data)
    clone, searched, gold_key, settings = None, train, None, config.search
    if arm == "cloned":
        cloning = ProgramCloning(**parts)
        clone = {**_cost(fit(cloning, train.subset(data.given), config=seeded(config.fit_clone, seed), collate=collate,
                             run=rundir, name="cloned-clone")), "after": _evaluate(cloning, test)}
        if config.keep_gold:
            given = set(data.given.tolist())  # the gold programs of the given questions only, None elsewhere
            searched = _WithPrograms(train, [p if i in given else None for i, p in enumerate(train.programs)])
            gold_key = "program"
        settings = config.cloned_search or config.search
    search = ProgramSearch(**parts, dataset_size=len(train), config=settings, gold_key=gold_key)
    result = fit(search, searched, config=seeded(config.fit_search, seed), collate=collate, run=rundir,
                 name=f"{arm}-search")
    measured = {**_evaluate(search, test), **_cost(result)}
    if clone is None:
        return measured
    measured["clone"] = clone
    if config.refit is None:
        return measured
    refit = _refit(config, typed, seed, data, search, rundir)
    measured["search"] = {k: measured[k] for k in ("accuracy", "accuracy_by_depth")}
    return {**measured, "accuracy": refit.pop("accuracy"), "accuracy_by_depth": refit.pop("accuracy_by_depth"),
            "refit": refit}


def _refit(config: Config, typed: bool, seed: int, data: SeedData, search: ProgramSearch, rundir: RunDir) -> dict:
    """Fresh modules (initialised as the gold arm's) trained with ``config.refit`` on the search's greedy
    programs for the training questions; their test accuracy on its greedy programs for the test questions."""
    programs = {name: _greedy_programs(search, d) for name, d in (("train", data.train), ("test", data.test))}
    torch.manual_seed(seed)
    model = _nmn(config, typed)
    result = fit(Classification(model, target="answer"), _WithPrograms(data.train, programs["train"]),
                 config=seeded(config.refit, seed), collate=collate, run=rundir, name="cloned-refit")
    correct = predict(Classification(model, target="answer"), _WithPrograms(data.test, programs["test"]),
                      collate=collate) == data.test.answers
    return {"accuracy": float(correct.float().mean()), "accuracy_by_depth": accuracy_by(correct, data.test.depths),
            **_cost(result)}


@torch.no_grad()
def _greedy_programs(objective: ProgramObjective, data: Dataset) -> list:
    """The policy's greedy program for every question of ``data``, in order."""
    was_training = objective.training
    objective.eval()
    try:
        return [p for batch in DataLoader(data, batch_size=256, shuffle=False, collate_fn=collate)
                for p in objective.programs(batch, mode="greedy").programs]
    finally:
        objective.train(was_training)


class _WithPrograms(Dataset):
    """``data`` with question i's program replaced by ``programs[i]``."""

    def __init__(self, data: Dataset, programs: list) -> None:
        self.data, self.programs = data, programs

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        return {**self.data[i], "program": self.programs[i]}


def arm_parts(config: Config, typed: bool, data: SeedData) -> tuple[nn.Module, dict]:
    """A learned arm's NMN (freshly initialised from the global seed) and the parts its program objectives share
    (``policy``, ``library``, ``encoder``, ``library_context``): the NMN's modules and stem are the library's, so
    the NMN runs given programs with the arm's modules; also used by ``scripts/layouts_modules_probe.py``."""
    model = _nmn(config, typed)
    output = Probs(len(ANSWERS)) if typed else Logits(len(ANSWERS))
    space = ProgramSpace.of(model.library, output=output, max_size=data.max_size, max_depth=max(config.depths),
                            modules=MODULES)
    vocabulary = QuestionVocabulary.build(data.train.questions)
    encoder = QuestionEncoder(vocabulary, embed=max(1, config.policy_hidden // 2), hidden=config.policy_hidden)
    policy = ProgramPolicy(space=space, d_context=config.policy_hidden, hidden=config.policy_hidden)
    return model, {"policy": policy, "library": model.library, "encoder": encoder,
                   "library_context": {"features": ("image", model.stem)}}


def _nmn(config: Config, typed: bool):
    return nmn(typed, image_size=config.image_size, channels=config.stem_channels, hidden=config.hidden,
               library=functools.partial(nmn_library, reasoning=()))


def _cost(result: FitResult) -> dict:
    return {"steps": result.steps, "train_seconds": result.seconds,
            "ms_per_step": 1e3 * result.seconds / max(result.steps, 1)}


@torch.no_grad()
def _evaluate(objective: ProgramObjective, test: ClevrLikeDataset) -> dict:
    """Answer accuracy of the greedy programs (overall and by depth), their exact match and execution
    equivalence with the gold programs, and the policy's entropy over whole programs (from one sampled
    program per question)."""
    was_training = objective.training
    objective.eval()
    correct, exact, equivalent = [], 0, 0
    entropy = 0.0
    try:
        for batch in DataLoader(test, batch_size=256, shuffle=False, collate_fn=collate):
            programs = objective.programs(batch, mode="greedy").programs
            answers = objective.predict(batch)
            correct.append(answers == batch["answer"])
            entropy += float(objective.programs(batch, mode="sample").sequence_entropy().sum())
            for program, gold, index, answer in zip(programs, batch["program"], batch["index"].tolist(),
                                                    batch["answer"].tolist(), strict=True):
                exact += program == gold
                equivalent += _oracle(program, test.scenes[index]) == ANSWERS[answer]
    finally:
        objective.train(was_training)
    n = len(test)
    correct = torch.cat(correct)
    return {"accuracy": float(correct.float().mean()), "exact_match": exact / n, "execution_equivalent": equivalent / n,
            "entropy": entropy / n, "accuracy_by_depth": accuracy_by(correct, test.depths)}


def _oracle(program, scene) -> str | None:
    """The symbolic answer of a program on a scene, or ``None`` where it has none (``describe`` of a set that
    does not hold exactly one object)."""
    try:
        return execute(program, scene)
    except ModnetsError:
        return None


def _report(config: Config, m: dict) -> Report:
    first = m["per_seed"][0]
    n, n_train, n_test = len(m["seeds"]), first["n_train"], first["n_test"]

    def get(measure: str, lib: str, arm: str) -> Spread:
        return Spread.from_dict(m[measure][lib][arm])

    def fmt(measure: str, lib: str, arm: str) -> str:
        return get(measure, lib, arm).format("{:.2f}" if measure == "entropy" else "{:.3g}",
                                             percent=measure != "entropy")

    rows = []
    for lib in config.libraries:
        for arm in ARMS:
            runs = [s["libraries"][lib][arm] for s in m["per_seed"]]
            steps = sum(r.get("steps", 0) for r in (runs[0], runs[0].get("clone", {}), runs[0].get("refit", {})))
            rows.append((lib, LABELS[arm], fmt("accuracy", lib, arm),
                         " / ".join(f"{100 * r['accuracy']:.1f}" for r in runs),
                         get("share_of_gold", lib, arm).format(percent=True), fmt("exact_match", lib, arm),
                         fmt("execution_equivalent", lib, arm), fmt("entropy", lib, arm),
                         f"{sum(r['ms_per_step'] for r in runs) / n:.0f}", steps))
    majority = Spread.from_dict(m["accuracy_majority_answer"])
    rows.append(("-", "majority answer per question type", majority.format(percent=True),
                 " / ".join(f"{100 * v:.1f}" for v in majority.values), "-", "-", "-", "-", "-", "-"))
    headline = markdown_table(["modules", "layouts", "test accuracy", "per seed (%)", "share of gold", "exact match",
                               "execution-equivalent", "H(A|X) nats", "ms / step", "steps"], rows)
    lib = config.libraries[0]
    gold, answers, cloned = (get("accuracy", lib, arm) for arm in ARMS)
    share = get("share_of_gold", lib, "cloned")
    after = {k: Spread.from_dict(v) for k, v in m["clone_after"][lib].items()}

    def versus(a: Spread) -> str:
        gap = a.mean - majority.mean
        if gap < 0.02:
            return f"no better than the majority answer per question type ({majority.format(percent=True)})"
        return (f"{100 * gap:.1f} points above the majority answer per question type "
                f"({majority.format(percent=True)})")

    aim = f"the {percent(TARGET_SHARE, 0)} aimed at"
    target = (f"falls short of {aim}" if share.mean < TARGET_SHARE else
              f"meets {aim}" if share.n > 1 and share.mean - share.std >= TARGET_SHARE else
              f"meets {aim} (one seed)" if share.n == 1 else
              f"meets {aim} on average, though not by more than the seed spread")
    summary = (
        f"{'Over ' + str(n) + ' seeds (mean ± standard deviation), a' if n > 1 else 'A'} {lib} NMN answered "
        f"{n_test:,} held-out CLEVR-like questions (depths {', '.join(map(str, config.depths))}) with "
        f"{gold.format(percent=True)} accuracy when given the gold programs. With programs written by a "
        f"ProgramPolicy from the question, learned from the answers alone, accuracy was "
        f"{answers.format(percent=True)} ({versus(answers)}); the greedy programs were the gold ones for "
        f"{fmt('exact_match', lib, 'answers')} of the questions and gave the gold answer under the symbolic oracle "
        f"for {fmt('execution_equivalent', lib, 'answers')}. Cloned from the gold programs of {first['n_gold']:,} "
        f"questions ({percent(config.gold_fraction, 0)}), the policy wrote the gold program for "
        f"{after['exact_match'].format(percent=True)} of the test questions before the search on the answers "
        f"({'still cloning those programs' if config.keep_gold else 'answers only'}) and "
        f"{fmt('exact_match', lib, 'cloned')} after it, and the arm answered {cloned.format(percent=True)} "
        f"({versus(cloned)})"
        + (f" with fresh modules trained on the programs its policy writes, against "
           f"{Spread.from_dict(m['cloned_search_accuracy'][lib]).format(percent=True)} with the search's own "
           f"modules" if config.refit is not None else "")
        + f": {share.format(percent=True)} of the gold-program accuracy, which {target}. "
        f"{_reading({k: get(k, lib, 'answers').mean for k in MEASURES}, majority.mean)} "
        + (_types_text(m) + " " if set(config.libraries) == set(LIBRARIES) else "")
        + f"{'Quick' if config.quick else 'Full'} mode, seeds "
        f"{', '.join(map(str, m['seeds']))}; {_training_seconds(m):.0f} s of training in all (this process: "
        f"{m['total_seconds']:.0f} s, less when it resumed from checkpoints)."
    )
    clone_table = markdown_table(
        ["modules", "cloned arm", "test accuracy", "exact match", "execution-equivalent", "H(A|X) nats", "steps"],
        [row for lib in config.libraries for row in (
            (lib, "after cloning only", *(Spread.from_dict(m["clone_after"][lib][k]).format(
                "{:.2f}" if k == "entropy" else "{:.3g}", percent=k != "entropy") for k in MEASURES),
             first["libraries"][lib]["cloned"]["clone"]["steps"]),
            (lib, "after the search on answers",
             *(Spread.from_dict(m["cloned_search_accuracy"][lib]).format(percent=True) if k == "accuracy"
               and config.refit is not None else fmt(k, lib, "cloned") for k in MEASURES),
             first["libraries"][lib]["cloned"]["steps"]),
            *([(lib, "modules refitted on its programs", fmt("accuracy", lib, "cloned"), *["as above"] * 3,
                first["libraries"][lib]["cloned"]["refit"]["steps"])] if config.refit is not None else []))],
    ) + ("" if config.refit is None else
         "\n\nThe last row is the arm's result: fresh modules, initialised and trained as the gold arm's "
         "(`refit`), learn on the programs the policy writes for the training questions and answer the test "
         "questions with the programs it writes for them. The search's own modules learned while the programs "
         "changed under them.")
    curves = {label: {int(d): Spread.from_dict(v) for d, v in curve.items()}
              for label, curve in m["accuracy_by_depth"].items()}
    depth_table = markdown_table(
        ["modules, layouts", *(f"depth {d}" for d in config.depths)],
        [(label, *(curve[d].format(percent=True) if d in curve else "-" for d in config.depths))
         for label, curve in curves.items()],
    ) + ("\n\nTest accuracy by program depth (Fig. `accuracy_by_depth.png` draws the error). Every depth is "
         "trained on; the thesis's depth study (`modnets run nmn`) tests beyond the training depths.")
    search = config.search
    reading = (
        f"The answers-alone arm searches with {_method(search)}"
        + (f", the cloned arm with {_method(config.cloned_search)}" if config.cloned_search is not None else
           " (both learned arms)")
        + f". S = {search.samples} sampled programs per question and step, E-step score "
        f"{'log p(y|x,a)' if search.score == 'likelihood' else 'log p(y|x,a) + log p(a|x)'}, "
        f"entropy bonus {search.entropy:g}, over a program space of {first['max_size']} calls at most and depth "
        f"{max(config.depths)} (the largest gold program has {first['gold_max_size']} calls). Every sampled program "
        f"type-checks by construction; the space still holds far more programs than the training set has "
        f"questions, and an answer rewards a program only as well as the modules it calls have learned, which "
        f"they learn at the same time. Exact match is strict: `and` and `or` are commutative and many programs "
        f"give the same answer on a scene, which the execution-equivalence column counts (an oracle answer equal "
        f"to the gold answer on this scene, which a wrong program can also reach by chance, e.g. on yes/no "
        f"questions). H(A|X) is the policy's entropy over whole programs in nats, estimated from one sampled "
        f"program per test question (the sum of its per-step entropies). Times per step are wall-clock on this "
        f"machine and include the sampled programs' execution (S = {search.samples} programs per question) and, "
        f"with a buffer, the buffer's programs. The share of gold is the arm's accuracy over the gold-program "
        f"arm's with the same modules, per seed. The library's default E-step score is the research note's joint "
        f"score; the answers-alone arm ranks by log p(y|x,a) alone by default (`--set search.score=joint` runs the "
        f"other): while the modules are weak, the policy's own log p(a|x) outweighs the answers' evidence in the "
        f"joint score, and in trial runs the answers-alone arm then collapsed onto a few programs."
    )
    paper = (
        "Hu et al. (2017, N2NMN) report on CLEVR 69.0 % for layouts learned without expert layouts, 78.9 % after "
        "cloning expert layouts (of every training question) and 83.7 % after policy search that starts from the "
        "clone; Andreas et al.'s NMN took its layouts from a parser. This run is a small analogue on generated data "
        f"with {n_train:,} training questions, gold layouts for {percent(config.gold_fraction, 0)} of them in the "
        "cloned arm and minutes of CPU training, so its absolute numbers are not comparable with the paper's; the "
        "comparison to make is the ordering of the arms and whether the learned layouts are the gold ones."
    )
    data = (
        f"Procedurally generated CLEVR-like data (`modnets.data.make_clevr_like`, the `sets` program family), "
        f"{config.image_size}x{config.image_size} images, {n_train:,} training and {n_test:,} test questions on "
        f"other scenes per seed (data seeds 100 s + 1 and 100 s + 2); generation took {first['data_seconds']:.1f} s. "
        f"Modules: {', '.join(MODULES)}, width {config.hidden}, typed (sigmoid masks, probabilities) or untyped "
        f"(ReLU heat maps, logits; thesis Table 4.3); the policy reads the question through a GRU encoder of width "
        f"{config.policy_hidden}. Per-seed results: `metrics.json` (`per_seed`). TensorBoard logs: `tensorboard/`."
    )
    return Report(
        name="layouts",
        title="Learned layouts: programs written by a policy vs gold programs",
        summary=summary,
        headline=headline,
        sections=[("Cloning, then search", clone_table), ("Accuracy by program depth", depth_table),
                  ("How to read the numbers", reading), ("Against the papers", paper), ("Data", data)],
        metrics=_finite(m),
        figures=["accuracy_by_depth.png"],
        config=config,
    )


def _training_seconds(m: dict) -> float:
    """Every stage's training time, summed over arms, libraries and seeds (a resumed run's included)."""
    return sum(stage.get("train_seconds", 0.0) for s in m["per_seed"] for arms in s["libraries"].values()
               for arm in arms.values() for stage in (arm, arm.get("clone", {}), arm.get("refit", {})))


def _method(search: ProgramSearchConfig) -> str:
    if search.buffer_size == 0:
        return "REINFORCE"
    if search.buffer_size == 1 and not search.sample_gradient:
        return f"generalised EM ({'joint' if search.score == 'joint' else 'likelihood'} score)"
    return f"the top-K buffer (K = {search.buffer_size})"


def _types_text(m: dict) -> str:
    """Typed vs untyped modules under each kind of layout, judged against the seed spread."""
    parts = []
    for arm in ARMS:
        typed, untyped = (Spread.from_dict(m["accuracy"][lib][arm]) for lib in LIBRARIES)
        gap, noise = typed.mean - untyped.mean, max(typed.std, untyped.std)
        verdict = ("more than the seed spread" if abs(gap) > noise and typed.n > 1 else
                   "one seed: no spread to judge it by" if typed.n == 1 else "within the seed spread: not a result")
        parts.append(f"{LABELS[arm]} {typed.format(percent=True)} vs {untyped.format(percent=True)} "
                     f"({'+' if gap >= 0 else ''}{100 * gap:.1f} points, {verdict})")
    return "Typed vs untyped modules: " + "; ".join(parts) + "."


def _reading(answers: dict, majority: float) -> str:
    """What the answers-alone arm's numbers (means over seeds) say about the layouts it learned."""
    if answers["exact_match"] >= 0.5:
        return "From answers alone, the policy recovered most of the gold layouts."
    if answers["execution_equivalent"] >= 0.5:
        return ("From answers alone, the policy mostly wrote programs other than the gold ones that still compute "
                "the gold answer.")
    if answers["accuracy"] >= majority + 0.02:
        return ("From answers alone, the layouts are neither the gold ones nor equivalent to them under the oracle, "
                "yet the answers beat the prior: the modules adapted to the policy's own programs, a solution "
                "that answers without the intended compositional structure.")
    return ("From answers alone, the policy and the modules found neither the gold layouts nor answers better "
            "than the prior within this budget.")


def _finite(m):
    """Metrics with NaN / inf replaced by ``None`` (JSON has no NaN)."""
    if isinstance(m, dict):
        return {k: _finite(v) for k, v in m.items()}
    if isinstance(m, float) and not math.isfinite(m):
        return None
    return m
