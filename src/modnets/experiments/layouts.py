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
the training time per step.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from .._checks import check_ints
from .._config import Config as ConfigBase
from ..analysis import majority_baseline
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
from ..types import Probs
from ._report import Report, markdown_table, percent

__all__ = ["Config", "run"]

ARMS = ("gold", "answers", "cloned")
LABELS = {"gold": "gold programs (given)", "answers": "learned from answers alone",
          "cloned": "cloned from gold, then answers"}
#: The modules of the default (``sets``) program family.
MODULES = ("find", "relate", "and", "or", "exist", "count", "describe")


@dataclass
class Config(ConfigBase):
    """Settings of the ``layouts`` experiment (``Config.for_mode(quick)`` gives the two presets).

    Attributes:
        depths: program depths of the generated questions.
        n_train: training questions; n_test: held-out questions, on other scenes.
        gold_fraction: the share of training questions whose gold program the cloned arm learns from.
        keep_gold: the cloned arm keeps cloning those gold programs during its search on the answers.
        hidden: width of the NMN modules; stem_channels: the image stem's stages.
        policy_hidden: width of the question encoder and of the policy's GRU.
        max_size: most calls in a program the policy may write; ``None``: the largest gold program's.
        search: the program search of both learned arms (buffer size, samples, entropy bonus ...).
        fit_gold: training of the gold-program NMN; fit_search: the program search (both learned arms);
        fit_clone: the cloning stage of the cloned arm (on its share of the training questions).
    """

    quick: bool = False
    seed: int = 0
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
    fit_gold: FitConfig = field(default_factory=lambda: FitConfig(epochs=20, batch_size=64, lr=2e-3))
    fit_clone: FitConfig = field(default_factory=lambda: FitConfig(epochs=40, batch_size=32, lr=2e-3))
    fit_search: FitConfig = field(default_factory=lambda: FitConfig(epochs=20, batch_size=64, lr=2e-3))

    def __post_init__(self) -> None:
        check_ints(self, "n_train", "n_test", "hidden", "policy_hidden")
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

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0) -> Config:
        if quick:
            return cls(
                quick=True, seed=seed, n_train=3000, n_test=500,
                fit_gold=FitConfig(epochs=15, batch_size=64, lr=3e-3, seed=seed),
                fit_clone=FitConfig(epochs=30, batch_size=32, lr=3e-3, seed=seed),
                fit_search=FitConfig(epochs=15, batch_size=64, lr=3e-3, seed=seed),
            )
        return cls(seed=seed, fit_gold=FitConfig(epochs=20, batch_size=64, lr=2e-3, seed=seed),
                   fit_clone=FitConfig(epochs=40, batch_size=32, lr=2e-3, seed=seed),
                   fit_search=FitConfig(epochs=20, batch_size=64, lr=2e-3, seed=seed))


def run(config: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Report:
    """Train the three arms and evaluate them on held-out questions; return the report (checkpoints go into
    ``out_dir``; ``resume=True`` continues from them)."""
    t0 = time.perf_counter()
    data = {split: make_clevr_like(ClevrLikeConfig(n_examples=n, depths=config.depths, image_size=config.image_size,
                                                   seed=config.seed * 100 + offset))
            for split, n, offset in (("train", config.n_train, 1), ("test", config.n_test, 2))}
    train, test = data["train"], data["test"]
    gold_size = max(p.size for p in (*train.programs, *test.programs))
    max_size = config.max_size or gold_size
    metrics: dict = {"data_seconds": time.perf_counter() - t0, "max_size": max_size,
                     "gold_max_size": gold_size, "arms": {}}
    vocabulary = QuestionVocabulary.build(train.questions)
    rundir = RunDir(out_dir, resume=resume, progress=progress)

    # (a) gold programs: only the modules learn
    torch.manual_seed(config.seed)
    model = _nmn(config)
    result = fit(Classification(model, target="answer"), train, config=config.fit_gold, collate=collate, run=rundir,
                 name="gold")
    correct = predict(Classification(model, target="answer"), test, collate=collate) == test.answers
    metrics["arms"]["gold"] = {"accuracy": float(correct.float().mean()), "exact_match": 1.0,
                               "execution_equivalent": 1.0, "entropy": 0.0, **_cost(result)}

    # (b) from answers alone, and (c) cloned from a fraction of the gold programs, then answers
    n_gold = max(1, round(config.gold_fraction * len(train)))
    metrics["n_gold"] = n_gold
    for arm in ("answers", "cloned"):
        torch.manual_seed(config.seed + 1)
        model = _nmn(config)
        space = ProgramSpace.of(model.library, output=Probs(len(ANSWERS)), max_size=max_size,
                                max_depth=max(config.depths), modules=MODULES)
        encoder = QuestionEncoder(vocabulary, embed=max(1, config.policy_hidden // 2), hidden=config.policy_hidden)
        policy = ProgramPolicy(space=space, d_context=config.policy_hidden, hidden=config.policy_hidden)
        parts = {"policy": policy, "library": model.library, "encoder": encoder,
                 "library_context": {"features": ("image", model.stem)}}
        clone, searched, gold_key = None, train, None
        if arm == "cloned":
            given = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed))[:n_gold]
            cloning = ProgramCloning(**parts)
            clone = {**_cost(fit(cloning, train.subset(given), config=config.fit_clone, collate=collate, run=rundir,
                                 name="cloned-clone")), "after": _evaluate(cloning, test)}
            if config.keep_gold:
                searched, gold_key = _SomeGold(train, given.tolist()), "program"
        search = ProgramSearch(**parts, dataset_size=len(train), config=config.search, gold_key=gold_key)
        result = fit(search, searched, config=config.fit_search, collate=collate, run=rundir, name=f"{arm}-search")
        metrics["arms"][arm] = {**_evaluate(search, test), **_cost(result)}
        if clone is not None:
            metrics["arms"][arm]["clone"] = clone
    kinds = [p.key if p.name == "describe" else p.name for p in train.programs]
    test_kinds = [p.key if p.name == "describe" else p.name for p in test.programs]
    metrics["accuracy_majority_answer"] = float(majority_baseline(train.answers, kinds, test.answers,
                                                                  test_kinds).float().mean())
    return _report(config, metrics, len(train), len(test))


class _SomeGold(Dataset):
    """The training questions with their gold program kept for the given examples only (``None`` elsewhere)."""

    def __init__(self, data: ClevrLikeDataset, given: list[int]) -> None:
        self.data, self.given = data, set(given)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        item = self.data[i]
        return item if i in self.given else {**item, "program": None}


def _nmn(config: Config):
    return nmn(True, image_size=config.image_size, channels=config.stem_channels, hidden=config.hidden,
               library=functools.partial(nmn_library, reasoning=()))


def _cost(result: FitResult) -> dict:
    return {"steps": result.steps, "train_seconds": result.seconds,
            "ms_per_step": 1e3 * result.seconds / max(result.steps, 1)}


@torch.no_grad()
def _evaluate(objective: ProgramObjective, test: ClevrLikeDataset) -> dict:
    """Answer accuracy of the greedy programs, their exact match and execution equivalence with the gold
    programs, and the policy's entropy over whole programs (from one sampled program per question)."""
    was_training = objective.training
    objective.eval()
    correct = exact = equivalent = 0
    entropy = 0.0
    try:
        for batch in DataLoader(test, batch_size=256, shuffle=False, collate_fn=collate):
            programs = objective.programs(batch, mode="greedy").programs
            answers = objective.predict(batch)
            correct += int((answers == batch["answer"]).sum())
            entropy += float(objective.programs(batch, mode="sample").sequence_entropy().sum())
            for program, gold, index, answer in zip(programs, batch["program"], batch["index"].tolist(),
                                                    batch["answer"].tolist(), strict=True):
                exact += program == gold
                equivalent += _oracle(program, test.scenes[index]) == ANSWERS[answer]
    finally:
        objective.train(was_training)
    n = len(test)
    return {"accuracy": correct / n, "exact_match": exact / n, "execution_equivalent": equivalent / n,
            "entropy": entropy / n}


def _oracle(program, scene) -> str | None:
    """The symbolic answer of a program on a scene, or ``None`` where it has none (``describe`` of a set that
    does not hold exactly one object)."""
    try:
        return execute(program, scene)
    except ModnetsError:
        return None


def _report(config: Config, m: dict, n_train: int, n_test: int) -> Report:
    arms = m["arms"]
    rows = []
    for arm in ARMS:
        a = arms[arm]
        steps = a["steps"] + a.get("clone", {}).get("steps", 0)
        rows.append((LABELS[arm], percent(a["accuracy"]), percent(a["exact_match"]), percent(a["execution_equivalent"]),
                     f"{a['entropy']:.2f}", f"{a['ms_per_step']:.0f}", steps))
    rows.append(("majority answer per question type", percent(m["accuracy_majority_answer"]), "-", "-", "-", "-", "-"))
    headline = markdown_table(["layouts", "test accuracy", "exact match", "execution-equivalent", "H(A|X) nats",
                               "ms / step", "steps"], rows)
    gold, answers, cloned = arms["gold"], arms["answers"], arms["cloned"]
    majority = m["accuracy_majority_answer"]
    clone_after = cloned["clone"]["after"]

    def versus(a: dict) -> str:
        gap = a["accuracy"] - majority
        if gap < 0.02:
            return f"no better than the majority answer per question type ({percent(majority)})"
        return f"{100 * gap:.1f} points above the majority answer per question type ({percent(majority)})"

    summary = (
        f"A typed NMN answered {n_test:,} held-out CLEVR-like questions (depths {', '.join(map(str, config.depths))}) "
        f"with {percent(gold['accuracy'])} accuracy when given the gold programs. With programs written by a "
        f"ProgramPolicy from the question, learned from the answers alone, accuracy was {percent(answers['accuracy'])} "
        f"({versus(answers)}); the greedy programs were the gold ones for {percent(answers['exact_match'])} of the "
        f"questions and gave the gold answer under the symbolic oracle for {percent(answers['execution_equivalent'])}. "
        f"Cloned from the gold programs of {m['n_gold']:,} questions ({percent(config.gold_fraction, 0)}), the policy "
        f"wrote the gold program for {percent(clone_after['exact_match'])} of the test questions before the search on "
        f"the answers ({'still cloning those programs' if config.keep_gold else 'answers only'}) and "
        f"{percent(cloned['exact_match'])} after it, and the arm answered {percent(cloned['accuracy'])} "
        f"({versus(cloned)}). {_reading(answers, majority)} {'Quick' if config.quick else 'Full'} mode, seed "
        f"{config.seed}."
    )
    clone_table = markdown_table(
        ["cloned arm", "test accuracy", "exact match", "execution-equivalent", "H(A|X) nats", "steps", "seconds"],
        [("after cloning only", percent(clone_after["accuracy"]), percent(clone_after["exact_match"]),
          percent(clone_after["execution_equivalent"]), f"{clone_after['entropy']:.2f}", cloned["clone"]["steps"],
          f"{cloned['clone']['train_seconds']:.0f}"),
         ("after the search on answers", percent(cloned["accuracy"]), percent(cloned["exact_match"]),
          percent(cloned["execution_equivalent"]), f"{cloned['entropy']:.2f}", cloned["steps"],
          f"{cloned['train_seconds']:.0f}")],
    )
    search = config.search
    method = ("REINFORCE" if search.buffer_size == 0 else
              "generalised EM" if search.buffer_size == 1 and not search.sample_gradient else
              f"the top-K buffer (K = {search.buffer_size})")
    reading = (
        f"Both learned arms search with {method}, S = {search.samples} sampled programs per question and step, "
        f"E-step score {'log p(y|x,a)' if search.score == 'likelihood' else 'log p(y|x,a) + log p(a|x)'}, "
        f"entropy bonus {search.entropy:g}, over a program space of {m['max_size']} calls at most and depth "
        f"{max(config.depths)} (the largest gold program has {m['gold_max_size']} calls). Every sampled program "
        f"type-checks by construction; the space still holds far more programs than the training set has "
        f"questions, and an answer rewards a program only as well as the modules it calls have learned, which "
        f"they learn at the same time. Exact match is strict: `and` and `or` are commutative and many programs "
        f"give the same answer on a scene, which the execution-equivalence column counts (an oracle answer equal "
        f"to the gold answer on this scene, which a wrong program can also reach by chance, e.g. on yes/no "
        f"questions). H(A|X) is the policy's entropy over whole programs in nats, estimated from one sampled "
        f"program per test question (the sum of its per-step entropies). Times per step are wall-clock on this "
        f"machine and include the sampled programs' execution (S = {search.samples} programs per question) and, "
        f"with a buffer, the buffer's programs. The library's default E-step score is the research note's joint "
        f"score; this experiment ranks by log p(y|x,a) alone by default (`--set search.score=joint` runs the other): "
        f"while the modules are weak, the policy's own log p(a|x) outweighs the answers' evidence in the joint "
        f"score, and in trial runs the answers-alone arm then collapsed onto a few programs."
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
        f"other scenes; generation took {m['data_seconds']:.1f} s. Modules: "
        f"{', '.join(MODULES)} (typed interfaces), width {config.hidden}; the policy reads the question through a "
        f"GRU encoder of width {config.policy_hidden}. TensorBoard logs: `tensorboard/`."
    )
    return Report(
        name="layouts",
        title="Learned layouts: programs written by a policy vs gold programs",
        summary=summary,
        headline=headline,
        sections=[("Cloning, then search", clone_table), ("How to read the numbers", reading),
                  ("Against the papers", paper), ("Data", data)],
        metrics=_finite(m),
        config=config,
    )


def _reading(answers: dict, majority: float) -> str:
    """What the answers-alone arm's numbers say about the layouts it learned."""
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
