"""Experiment ``generalization``: does modularity generalise to combinations never seen in training?

Every split holds a structure out of training and tests on it (``modnets.data``), next to an in-distribution
test of fresh examples of the trained combinations:

- **compositions** (:func:`~modnets.data.composition_split`): tasks are compositions of hidden primitives;
  some pairs of adjacent primitives never occur together in training, though every primitive occurs at every
  step. Models: the routed modular networks of the ``routing`` experiment, trained the same way (generalised
  EM, the top-K buffer, REINFORCE, soft routing, straight-through Gumbel: its code paths), and the dense
  network of equal per-example compute. Routing diagnostics on held-out data: the adjusted mutual information
  between the module chosen at each layer and the true primitive of that step (do unseen combinations reuse
  the right modules?).
- **cogent** (:func:`~modnets.data.cogent_split`): CLEVR-like scenes, colour-shape pairings swapped between
  training (condition A) and the held-out test (B), as CLEVR-CoGenT.
- **closure** (:func:`~modnets.data.closure_split`): CLEVR-like programs whose structure puts a known module
  where training never put it, in the spirit of CLOSURE.
- **scan** (:func:`~modnets.data.scan_split`): SCAN's four standard splits (simple, add-primitive ``jump``, length,
  add-primitive ``turn left``). Models (:func:`train_scan_model`): the GRU and Transformer seq2seq
  baselines, and the grammar-given modular executor (typed modules composed by each command's parse), each
  trained for a fixed number of seconds; exact match of the whole action sequence on held-back training
  commands and on the split's test set, beside Lake and Baroni's published numbers. The budgets are tiny next
  to the paper's 100,000 updates per model, and the report says so.

On the CLEVR-like splits the models are those of the ``nmn`` experiment, trained the same way (its code
paths): the typed NMN and the untyped NMN, both given the programs, and FiLM (monolithic, reads the question)
of the typed NMN's parameter count. Every measurement is repeated over ``seeds`` seeds (data, held-out
choice and weights) and reported as mean and spread.

Compositions: routers and the task. The ``routing`` experiment's routers read the task id (a logits table
per task, ``router_input="task"``); the row of an unseen task is never trained, so such a router cannot route
a held-out task by construction, and neither can the dense network's task embedding. The default here,
``router_input="description"``, gives every model the task described by its parts instead (the one-hot
primitive of every step, beside the input), with routers that read their layer's input: then a modular
network *could* send an unseen combination through the modules of its known parts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from .._checks import check_ints
from .._config import Config as ConfigBase
from .._threads import num_threads
from ..analysis import majority_baseline, recovery_scores, spread
from ..data import (
    SCAN_SPLITS,
    ClevrLikeConfig,
    ClevrLikeSplit,
    CompositionConfig,
    CompositionTask,
    closure_split,
    cogent_split,
    composition_split,
)
from ..data import collate_clevr_like as collate
from ..errors import ConfigError
from ..models import QuestionVocabulary, dense_mlp, modular_mlp, nmn
from ..train import FitConfig, GaussianLikelihood, RunDir, predict, predict_routed
from ._report import Report, markdown_table, percent
from ._report import spread_text as _s
from ._routing_methods import LABELS as METHOD_LABELS
from ._routing_methods import METHODS, router_settings, train_and_test
from ._routing_methods import objective as make_objective
from ._scan_study import SCAN_KINDS, ScanResult, ScanTrainConfig, train_scan_model
from ._vqa_training import film_of_size, fit_answers, parameter_count, seeded

__all__ = ["SCAN_KINDS", "Config", "ScanPart", "ScanResult", "ScanTrainConfig", "run", "scan_results",
           "train_scan_model"]

#: not data-parallel: it trains many small models one after another
DATA_PARALLEL = False

SPLITS = ("compositions", "cogent", "closure", "scan")
VQA_MODELS = ("typed_nmn", "untyped_nmn", "film")
MODEL_LABELS = {**METHOD_LABELS, "typed_nmn": "typed NMN (given programs)",
                "untyped_nmn": "untyped NMN (given programs)", "film": "FiLM (same size)",
                "gru": "GRU seq2seq (attention)", "transformer": "Transformer seq2seq",
                "executor": "modular executor (given parse)"}
#: The SCAN splits of the full run: Lake and Baroni's four.
SCAN_DEFAULT_SPLITS = ("simple", "addprim_jump", "length", "addprim_turn_left")
#: Updates per model in Lake and Baroni (2018): 100,000 steps of one example.
PAPER_STEPS = 100_000
ROUTER_INPUTS = ("description", "task")
#: Published held-out accuracies: split -> (model, in-distribution or None, held-out, source).
PUBLISHED: dict[str, list[tuple[str, float | None, float, str]]] = {
    "cogent": [("FiLM", 0.983, 0.756, "CLEVR-CoGenT valA / valB, Perez et al. 2018")],
    "scan/simple": [("seq2seq, best", None, 0.998, "Lake & Baroni 2018")],
    "scan/length": [("seq2seq, best", None, 0.208, "Lake & Baroni 2018 (overall-best: 13.8 %)")],
    "scan/addprim_jump": [("seq2seq, best", None, 0.012, "Lake & Baroni 2018 (overall-best: 0.08 %)")],
    "scan/addprim_turn_left": [("seq2seq, best", None, 0.90, "Lake & Baroni 2018, about 90 %")],
}
_MODULAR = {"compositions": tuple(m for m in METHODS if m != "dense"), "vqa": ("typed_nmn", "untyped_nmn")}
_BASELINE = {"compositions": "dense", "vqa": "film"}


@dataclass
class CompositionsPart(ConfigBase):
    """The compositions split: data, the held-out rule, the routed networks and their training.

    Attributes:
        data: the composition problem (its seed is replaced by each repetition's seed).
        held_out: partners held out per primitive at every pair of adjacent steps (``composition_split``).
        router_input: ``"description"`` (every model sees the input beside the one-hot primitive of each step;
            dynamic routers) or ``"task"`` (the ``routing`` experiment's per-task routing tables and the dense
            network's task embedding: unseen tasks have untrained rows).
        d_model: width of the routed layers with ``"description"`` (with ``"task"`` it is the data's dim).
        n_modules, d_hidden, sigma: modules per layer, their hidden width, the Gaussian likelihood's sigma.
    """

    data: CompositionConfig = field(default_factory=lambda: CompositionConfig(n_train=8000, n_test=2000, gain=1.0))
    held_out: int = 1
    router_input: str = "description"
    d_model: int = 32
    n_modules: int = 4
    d_hidden: int = 32
    sigma: float = 0.3
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=30, batch_size=128, lr=1e-2))

    def __post_init__(self) -> None:
        check_ints(self, "held_out", "d_model", "n_modules", "d_hidden")
        if self.router_input not in ROUTER_INPUTS:
            raise ConfigError(f"CompositionsPart.router_input must be one of {ROUTER_INPUTS}, got "
                              f"{self.router_input!r}")
        if not self.sigma > 0:
            raise ConfigError(f"CompositionsPart.sigma must be > 0, got {self.sigma!r}")


@dataclass
class VQAPart(ConfigBase):
    """The CLEVR-like splits (cogent and closure alike): data and the NMN / FiLM models.

    ``film_width=None`` sizes FiLM to the typed NMN's parameter count.
    """

    programs: str = "clevr"
    depths: tuple[int, ...] = (2, 3, 4)
    n_train: int = 10000
    n_test: int = 1000
    image_size: int = 32
    hidden: int = 64
    question_hidden: int = 64
    film_width: int | None = None
    film_blocks: int = 3
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=6, batch_size=64, lr=2e-3))

    def __post_init__(self) -> None:
        check_ints(self, "n_train", "n_test", "image_size", "hidden", "question_hidden", "film_blocks")
        self.depths = tuple(self.depths)
        ClevrLikeConfig(n_examples=1, depths=self.depths, image_size=self.image_size, programs=self.programs)
        if self.film_width is not None:
            check_ints(self, "film_width")


@dataclass
class ScanPart(ConfigBase):
    """The SCAN splits: which models on which splits, and each model's budget (``train.seconds``).

    Attributes:
        models: of :data:`SCAN_KINDS` (``"gru"``, ``"transformer"``, ``"executor"``).
        splits: of :data:`~modnets.data.SCAN_SPLITS`.
        train: budget, sizes and evaluation limits of every model (:class:`ScanTrainConfig`).
    """

    models: tuple[str, ...] = SCAN_KINDS
    splits: tuple[str, ...] = SCAN_DEFAULT_SPLITS
    train: ScanTrainConfig = field(default_factory=lambda: ScanTrainConfig(seconds=300.0, eval_limit=None))

    def __post_init__(self) -> None:
        for name, known in (("models", SCAN_KINDS), ("splits", SCAN_SPLITS)):
            value = tuple(getattr(self, name))
            setattr(self, name, value)
            bad = [v for v in value if v not in known]
            if bad or not value:
                raise ConfigError(f"ScanPart.{name} must be a non-empty subset of {known}, got {value}")


@dataclass
class Config(ConfigBase):
    """Settings of the ``generalization`` experiment (``Config.for_mode(quick)`` gives the two presets).

    Seeds ``seed, seed + 1, ...`` (``seeds`` of them) each draw their own data, held-out choice and weights.
    ``methods`` are the compositions' models (the ``routing`` experiment's), ``models`` the CLEVR-like splits',
    ``scan.models`` SCAN's. Quick mode trains SCAN's GRU and executor for 25 s each on ``addprim_jump`` only;
    the full run all three models for 300 s each on simple, add-jump, length and add-turn-left.
    """

    quick: bool = False
    seed: int = 0
    seeds: int = 3
    splits: tuple[str, ...] = SPLITS
    methods: tuple[str, ...] = ("em", "topk", "reinforce", "soft", "gumbel", "moe", "dense")
    models: tuple[str, ...] = VQA_MODELS
    samples: int = 4
    buffer_size: int = 4
    threads: int = 1
    compositions: CompositionsPart = field(default_factory=CompositionsPart)
    vqa: VQAPart = field(default_factory=VQAPart)
    scan: ScanPart = field(default_factory=ScanPart)

    def __post_init__(self) -> None:
        for name, known in (("splits", SPLITS), ("methods", METHODS), ("models", VQA_MODELS)):
            value = tuple(getattr(self, name))
            setattr(self, name, value)
            bad = [v for v in value if v not in known]
            if bad or not value:
                raise ConfigError(f"Config.{name} must be a non-empty subset of {known}, got {value}")
        check_ints(self, "seeds", "samples", "buffer_size", "threads")

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0) -> Config:
        if quick:
            return cls(
                quick=True, seed=seed, seeds=1,
                compositions=CompositionsPart(
                    data=CompositionConfig(n_train=4000, n_test=1000, gain=1.0),
                    fit=FitConfig(epochs=15, batch_size=128, lr=1e-2, seed=seed)),
                vqa=VQAPart(n_train=2000, n_test=300, hidden=32, question_hidden=32, film_blocks=2,
                            fit=FitConfig(epochs=3, batch_size=64, lr=3e-3, seed=seed)),
                scan=ScanPart(models=("gru", "executor"), splits=("addprim_jump",),
                              train=ScanTrainConfig(seconds=25.0, eval_limit=500)),
            )
        return cls(seed=seed, compositions=CompositionsPart(fit=FitConfig(epochs=30, batch_size=128, lr=1e-2,
                                                                          seed=seed)),
                   vqa=VQAPart(fit=FitConfig(epochs=6, batch_size=64, lr=2e-3, seed=seed)))

    @property
    def seed_list(self) -> list[int]:
        """The seeds of the repetitions."""
        return [self.seed + i for i in range(self.seeds)]


# ---------------------------------------------------------------------------------------------- compositions
class _Described(Dataset):
    """Composition examples whose input is the task's description beside x: ``{"index", "x": (d + L P,),
    "y": (d,)}`` (no task id: the routers read the description)."""

    def __init__(self, data: CompositionTask):
        self.x = torch.cat([data.x, data.description], 1)  # (N, d + L P)
        self.y = data.y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"index": i, "x": self.x[i], "y": self.y[i]}


def _composition_net(method: str, part: CompositionsPart, data: CompositionTask) -> torch.nn.Module:
    d = data.x.shape[1]
    if part.router_input == "task":  # the routing experiment's networks
        if method == "dense":
            return dense_mlp(d_model=d, d_hidden=part.d_hidden, n_tasks=data.n_tasks)
        return modular_mlp(d_model=d, d_hidden=part.d_hidden, n_modules=part.n_modules, **router_settings(method),
                           static=True, n_tasks=data.n_tasks)
    d_in = d + data.description.shape[1]
    if method == "dense":
        return dense_mlp(d_in=d_in, d_model=part.d_model, d_hidden=part.d_hidden, n_out=d)
    return modular_mlp(d_in=d_in, d_model=part.d_model, d_hidden=part.d_hidden, n_modules=part.n_modules,
                       n_out=d, **router_settings(method))


def _ami(truth: Tensor, route, soft: bool) -> list[float]:
    """Per layer, the AMI between the chosen module (soft routing: its most probable) and the true primitive."""
    return list(recovery_scores(truth, route.probs.argmax(-1) if soft else route.choice).ami)


def _compositions(config: Config, seed: int, rundir: RunDir) -> dict[str, dict[str, Any]]:
    """Every method on one seed's compositions split: accuracies, and routing diagnostics on both test sets."""
    part = config.compositions
    split = composition_split(replace(part.data, seed=seed), held_out=part.held_out)
    wrap = _Described if part.router_input == "description" else (lambda data: data)
    train, test, held = (wrap(d) for d in split[:3])
    likelihood = GaussianLikelihood(part.sigma)
    results = {}
    for method in config.methods:
        torch.manual_seed(seed)
        net = _composition_net(method, part, split.train)
        objective = make_objective(method, net, samples=config.samples, buffer_size=config.buffer_size,
                                   n=len(train), ll=likelihood)
        metrics, routed, _ = train_and_test(method, net, objective, train, test, part="compositions",
                                             fit_config=seeded(part.fit, seed), collate=default_collate,
                                             rundir=rundir)
        on_held = predict_routed(net, held, collate=default_collate, mode=objective.eval_mode)
        m = {"in_distribution": split.test.task_accuracy(routed.output),
             "held_out": split.held_out.task_accuracy(on_held.output), "train_seconds": metrics["train_seconds"]}
        if method != "dense":
            soft = objective.eval_mode == "soft"
            m["ami_in_distribution"] = _ami(split.test.primitives, routed.route, soft)
            m["ami_held_out"] = _ami(split.held_out.primitives, on_held.route, soft)
            m["modules_used"] = metrics["modules_used"]
        results[method] = m
    return results


# ---------------------------------------------------------------------------------------------- CLEVR-like
def _vqa_split(name: str, config: Config, seed: int) -> ClevrLikeSplit:
    part = config.vqa
    data = ClevrLikeConfig(n_examples=part.n_train, depths=part.depths, image_size=part.image_size,
                           programs=part.programs, seed=seed)
    return (cogent_split if name == "cogent" else closure_split)(data, n_test=part.n_test)


def _question_type(data) -> list[tuple[str, str | None]]:
    return [(p.name, p.arg) for p in data.programs]


def _vqa(name: str, config: Config, seed: int, rundir: RunDir) -> dict[str, dict[str, Any]]:
    """The NMNs and FiLM on one seed's CoGenT or CLOSURE split, and the answer prior per question type."""
    part = config.vqa
    split = _vqa_split(name, config, seed)
    vocab = QuestionVocabulary.build(split.train.questions)

    def build(typed: bool):
        torch.manual_seed(seed)
        return nmn(typed, image_size=part.image_size, hidden=part.hidden, prior="logits" if typed else "geometric",
                   questions=vocab, question_hidden=part.question_hidden)

    results: dict[str, dict[str, Any]] = {}
    typed_size = parameter_count(build(True))
    for model_name in config.models:
        if model_name == "film":
            torch.manual_seed(seed)
            model = film_of_size(part, vocab, typed_size)
        else:
            model = build(model_name == "typed_nmn")
        seconds = fit_answers(model, split.train, seeded(part.fit, seed), rundir, model_name).seconds
        results[model_name] = {
            **{key: float((predict(model, data, collate=collate) == data.answers).float().mean())
               for key, data in (("in_distribution", split.test), ("held_out", split.held_out))},
            "train_seconds": seconds, "parameters": parameter_count(model),
        }
    results["majority"] = {
        key: float(majority_baseline(split.train.answers, _question_type(split.train), data.answers,
                                     _question_type(data)).float().mean())
        for key, data in (("in_distribution", split.test), ("held_out", split.held_out))
    }
    return results


# ---------------------------------------------------------------------------------------------- SCAN
def scan_results(split: str, *, config: Config, seed: int, rundir: RunDir) -> dict[str, dict[str, float]]:
    """Per SCAN model of ``config.scan.models``, what :func:`train_scan_model` measured on one standard split.

    ``in_distribution`` is the exact-match accuracy (the whole action sequence right) on training commands
    held back from the split's training set, ``held_out`` on the split's test set; beside them the training
    time, optimiser steps, parameters and the mean loss of the first and last logged steps.

    Args:
        split: a split name of :data:`~modnets.data.SCAN_SPLITS`.
        config: the experiment's settings (``config.scan``: models and each model's budget).
        seed: the repetition's seed (split order, held-back commands, weights, batches).
        rundir: where to log and checkpoint (one ``fit`` run per model).
    """
    results = {}
    for kind in config.scan.models:
        r = train_scan_model(kind, split, seed=seed, config=config.scan.train, run=rundir)
        results[kind] = {"in_distribution": r.in_distribution, "held_out": r.test, "train_seconds": r.seconds,
                         "steps": r.steps, "parameters": r.parameters, "first_loss": r.first_loss,
                         "last_loss": r.last_loss, "n_train": r.n_train, "n_in_distribution": r.n_in_distribution,
                         "n_held_out": r.n_test}
    return results


# ---------------------------------------------------------------------------------------------- run
def run(config: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Report:
    """Every split with every model, once per seed; write logs and checkpoints into ``out_dir`` (one ``seedS``
    folder per seed); return the report (``resume=True``: every training continues from its checkpoints)."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    rundir = RunDir(out, resume=resume, progress=progress)
    per_seed = []
    with num_threads(config.threads):  # the models are small: extra threads only add synchronisation
        for seed in config.seed_list:
            sub = rundir.sub(f"seed{seed}")
            measured: dict[str, Any] = {"seed": seed}
            if "compositions" in config.splits:
                measured["compositions"] = _compositions(config, seed, sub.sub("compositions"))
            for name in ("cogent", "closure"):
                if name in config.splits:
                    measured[name] = _vqa(name, config, seed, sub.sub(name))
            if "scan" in config.splits:
                for name in config.scan.splits:
                    measured[f"scan/{name}"] = scan_results(name, config=config, seed=seed,
                                                            rundir=sub.sub(f"scan_{name}"))
            per_seed.append(measured)
    splits = [k for k in per_seed[0] if k != "seed"]
    metrics: dict[str, Any] = {"seeds": config.seed_list, "per_seed": per_seed}
    for name in splits:
        metrics[name] = {model: _spreads([s[name][model] for s in per_seed]) for model in per_seed[0][name]}
    metrics["total_seconds"] = time.perf_counter() - t0
    return _report(config, metrics, splits)


def _spreads(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Spread over seeds of every number (and of every per-layer list) one model measured."""
    out: dict[str, Any] = {}
    for key, value in per_seed[0].items():
        if isinstance(value, int | float):
            out[key] = spread([s[key] for s in per_seed]).to_dict()
        elif isinstance(value, list) and value and isinstance(value[0], int | float):
            out[key] = [spread([s[key][i] for s in per_seed]).to_dict() for i in range(len(value))]
    return out


# ---------------------------------------------------------------------------------------------- report
def _verdict(name: str, results: dict[str, Any], n_seeds: int) -> str:
    """Where modularity helped on one split: every modular model's held-out accuracy against the baseline's."""
    kind = "compositions" if name == "compositions" else "vqa"
    baseline = _BASELINE[kind]
    modular = [m for m in _MODULAR[kind] if m in results]
    if baseline not in results or not modular:
        return f"**{name}**: no modular model and baseline to compare."
    b = results[baseline]["held_out"]

    def judged(m: str) -> str:
        margin, noise = results[m]["held_out"]["mean"] - b["mean"], max(b["std"], results[m]["held_out"]["std"])
        sign = "+" if margin >= 0 else ""
        if n_seeds == 1:
            return f"{MODEL_LABELS[m]} {percent(results[m]['held_out']['mean'])} ({sign}{100 * margin:.1f})"
        kept = "" if abs(margin) > noise else ", within the seed spread"
        return f"{MODEL_LABELS[m]} {_s(results[m]['held_out'], percent=True)} ({sign}{100 * margin:.1f}{kept})"

    def beats(m: str) -> bool:
        margin = results[m]["held_out"]["mean"] - b["mean"]
        return margin > 0 and (n_seeds == 1 or margin > max(b["std"], results[m]["held_out"]["std"]))

    helped = [m for m in modular if beats(m)]
    rest = [m for m in modular if m not in helped]
    text = f"**{name}**, held-out accuracy against {MODEL_LABELS[baseline]} ({_s(b, percent=True)}): "
    text += (f"modularity helped for {', '.join(map(judged, helped))}" if helped else "modularity helped for none")
    text += f"; it did not for {', '.join(map(judged, rest))}." if rest else "."
    if "majority" in results:
        floor = results["majority"]["held_out"]["mean"]
        above = [m for m in (*modular, baseline) if results[m]["held_out"]["mean"] > floor]
        text += (f" The answer prior (majority answer per question type) reaches {percent(floor)} on the held-out "
                 f"questions; above it: {', '.join(MODEL_LABELS[m] for m in above) or 'no model'}.")
    drops = {m: results[m]["in_distribution"]["mean"] - results[m]["held_out"]["mean"] for m in (*modular, baseline)}
    text += " Drop from in-distribution to held-out, in points: " + ", ".join(
        f"{MODEL_LABELS[m]} {100 * d:.1f}" for m, d in drops.items()) + "."
    if n_seeds == 1:
        text += " One seed: no spread to judge the differences by."
    return text


def _published(name: str) -> str:
    """The published numbers of a split: ``model: in-distribution -> held-out (source)``."""
    refs = PUBLISHED.get(name, [])
    return "; ".join(f"{model}: {percent(ind) + ' -> ' if ind is not None else ''}{percent(held)} ({source})"
                     for model, ind, held, source in refs)


def _report(config: Config, metrics: dict, splits: list[str]) -> Report:
    n = len(metrics["seeds"])
    rows = []
    for name in splits:
        for model, m in metrics[name].items():
            drop = spread([a - b for a, b in zip(m["in_distribution"]["values"], m["held_out"]["values"],
                                                 strict=True)]).format(percent=True)
            rows.append((name, MODEL_LABELS.get(model, "majority answer per question type"),
                         _s(m["in_distribution"], percent=True), _s(m["held_out"], percent=True), drop,
                         _published(name) if model == "film" or name.startswith("scan") else ""))
    headline = ("Mean ± standard deviation over the seeds.\n\n" if n > 1 else "") + markdown_table(
        ["split", "model", "in-distribution", "held-out", "drop", "published held-out"], rows)
    verdicts = [_verdict(name, metrics[name], n) for name in splits if not name.startswith("scan")]
    verdicts += [_scan_verdict(name, metrics[name], config) for name in splits if name.startswith("scan/")]
    sections = []
    if "compositions" in metrics:
        comp = metrics["compositions"]
        routed = [m for m in comp if "ami_held_out" in comp[m]]
        table = markdown_table(
            ["method", "AMI per layer, in-distribution", "AMI per layer, held-out", "modules used per layer"],
            [(MODEL_LABELS[m], " / ".join(_s(a, "{:.2f}") for a in comp[m]["ami_in_distribution"]),
              " / ".join(_s(a, "{:.2f}") for a in comp[m]["ami_held_out"]),
              " / ".join(_s(a, "{:.0f}") for a in comp[m]["modules_used"])) for m in routed])
        c = config.compositions
        sections.append(("Compositions: do unseen combinations reuse the right modules?", table + "\n\n" + (
            f"{c.data.n_primitives ** c.data.depth} tasks, compositions of {c.data.depth} of {c.data.n_primitives} "
            f"primitives on R^{c.data.dim}; at every pair of adjacent steps each primitive has {c.held_out} "
            "held-out partner(s) (`composition_split`), so every primitive is trained at every step but the "
            "held-out pairs never. Accuracy: the share of test inputs whose prediction is nearest to their own "
            f"task's target among all tasks (chance {percent(1 / c.data.n_primitives ** c.data.depth)}). AMI: "
            "between the module chosen at each layer and the true primitive of that step (0 chance, 1 a perfect "
            "match); soft routing is scored by its most probable module. "
            + ("Every model sees the input beside the one-hot primitive of each step; routers read their "
               "layer's input." if c.router_input == "description" else
               "Routers read the task id (a logits table per task), the dense network a task embedding: the rows "
               "of held-out tasks are never trained, so no model can route or solve them by construction.")
        )))
    for name in ("cogent", "closure"):
        if name in metrics:
            sections.append((f"{name}: data", _vqa_text(name, config)))
    scan = [name for name in splits if name.startswith("scan/")]
    if scan:
        sections.append(("SCAN: our models next to the published ones, on tiny budgets", _scan_text(config, metrics,
                                                                                                     scan)))
    summary = (
        f"Systematic generalisation ({'quick mode' if config.quick else 'full mode'}, {n} seed{'s' if n > 1 else ''}: "
        f"{', '.join(map(str, metrics['seeds']))}; {metrics['total_seconds']:.0f} s in all): per split, accuracy "
        "on fresh examples of the trained combinations and on held-out combinations.\n\n"
        + "\n\n".join(f"- {v}" for v in verdicts)
        + ("\n\nQuick mode trains small models briefly on few examples: its numbers show that everything runs, "
           "not how the models compare; read the full run's." if config.quick else "")
    )
    return Report(
        name="generalization",
        title="Does modularity generalise? Held-out combinations on compositions, CoGenT, CLOSURE and SCAN",
        summary=summary,
        headline=headline,
        sections=sections,
        metrics=metrics,
        config=config,
    )


def _scan_verdict(name: str, results: dict[str, Any], config: Config) -> str:
    """One split's held-out exact match per model, beside the published numbers and the budget."""
    ours = ", ".join(f"{MODEL_LABELS[m]} {_s(r['held_out'], percent=True)}" for m, r in results.items())
    return (f"**{name}**, held-out exact match after at most {config.scan.train.seconds:.0f} s of training per "
            f"model: {ours}. Published: {_published(name) or 'none listed'}.")


def _scan_text(config: Config, metrics: dict, names: list[str]) -> str:
    """The SCAN section: budgets against the paper's, and per split and model what training reached."""
    train = config.scan.train
    rows, steps = [], []
    for name in names:
        for model, m in metrics[name].items():
            steps += m["steps"]["values"]
            rows.append((name.removeprefix("scan/"), MODEL_LABELS[model], _s(m["steps"], "{:.0f}"),
                         _s(m["train_seconds"], "{:.0f}", unit=" s"),
                         f"{_s(m['first_loss'], '{:.3f}')} -> {_s(m['last_loss'], '{:.3f}')}",
                         _s(m["in_distribution"], percent=True), _s(m["held_out"], percent=True),
                         _published(name) or "none listed"))
    table = markdown_table(["split", "model", "steps", "training time", "loss, first -> last", "in-distribution",
                            "held-out (ours)", "published"], rows)
    least, most = min(steps), max(steps)
    text = (
        f"Each model trained for at most {train.seconds:.0f} s ({config.threads} thread(s) on {train.device}): "
        f"{least:.0f}{f' to {most:.0f}' if most > least else ''} Adam steps of {train.batch_size} examples, "
        f"at most {most * train.batch_size:,.0f} examples seen. Lake and Baroni (2018) trained every model for "
        f"{PAPER_STEPS:,} steps of one example: our budgets are tiny next to theirs, at most "
        f"{100 * most / PAPER_STEPS:.2g} % of the paper's updates, so these numbers say what "
        f"{'seconds' if train.seconds < 60 else 'a few minutes'} of training reach, not what the architectures can; "
        "the published column is the paper's own, with its own model sizes (see `scan_gru`). In-distribution: exact "
        f"match on {percent(train.validation, 0)} of the training split's commands, held back from training"
        + (f" (at most {train.eval_limit:,} scored)" if train.eval_limit else "")
        + "; held-out: the split's test set" + (f" (its first {train.eval_limit:,} examples)" if train.eval_limit
                                                else "")
        + "."
        + (" The executor is given each command's parse by the grammar, the layout a seq2seq model has to "
           "discover, so the comparison measures what a given layout and content-blind copying buy, not what "
           "modularity learns by itself." if "executor" in config.scan.models else ""))
    skipped_models = [m for m in SCAN_KINDS if m not in config.scan.models]
    skipped_splits = [s for s in SCAN_DEFAULT_SPLITS if s not in config.scan.splits]
    if skipped_models or skipped_splits:
        full = Config.for_mode(False)
        text += (" Not run here" + (" (quick mode)" if config.quick else "") + ": "
                 + "; ".join(part for part in (
                     f"models {', '.join(MODEL_LABELS[m] for m in skipped_models)}" if skipped_models else "",
                     f"splits {', '.join(skipped_splits)}" if skipped_splits else "") if part)
                 + f". The full run trains {', '.join(full.scan.models)} for {full.scan.train.seconds:.0f} s each on "
                 f"{', '.join(full.scan.splits)}, {full.seeds} seeds.")
    return table + "\n\n" + text


def _vqa_text(name: str, config: Config) -> str:
    v = config.vqa
    what = ("training and the in-distribution test in CoGenT condition A (cubes gray / blue / brown / yellow, "
            "cylinders red / green / purple / cyan), the held-out test in condition B (swapped); spheres any "
            "colour" if name == "cogent" else
            "programs in which a `same` hop lies inside a `relate`, a `relate` inside an `equal` or a `same` inside "
            "a `compare` are held out (`CLOSURE_HELD_OUT`); every module is trained elsewhere")
    return (f"Generated CLEVR-like data (`{v.programs}` programs of depth {', '.join(map(str, v.depths))}, "
            f"{v.image_size} px): {v.n_train:,} training questions, {v.n_test:,} in-distribution and {v.n_test:,} "
            f"held-out test questions per seed; {what}. The NMNs are given the programs (typed: sigmoid masks and "
            "the question prior as logits; untyped: the original NMN with the geometric prior); FiLM reads the "
            "question. All trained end to end with the same settings, as the `nmn` experiment's depth study."
            + (" Published CLEVR-CoGenT numbers come from real CLEVR renders and full-size models: only the size of "
               "the drop compares." if name == "cogent" else ""))
