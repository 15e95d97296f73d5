"""Module-wise training of a Neural Module Network along its training plan (thesis 4.1-4.3).

The plan of ``nmn_assembly(prior=True)`` (``modnets analyze nmn-prior``) has two stages:

1. the question prior (``encoder``) on its own loss, and the mask-making unit (``find``: the image stem and
   every module below the answering modules, i.e. ``find``, ``relate``, ``and``, ``or``) through a
   surrogate gradient module, since only the answer is supervised; then ``find``'s outputs (the mask under
   each question's answering module and the image features) are cached as an auxiliary data set;
2. the answering modules (``describe``, ``exist``, ``count``), each from the cache on its own loss.

The trained parts are then already in place in the NMN: assembling is evaluating it. The NMN is read
through its parts (``stem``, ``library``, ``question_prior``), so any model built by
:func:`~modnets.models.nmn` fits, with any module library (the easy-vqa one included, whose ``not`` sits
above ``exist``: parameter-free answer-to-answer modules above an answering module are applied to its
output in its loss, and undone on the answer the SGM is trained to predict).
"""

from __future__ import annotations

import copy
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset, default_collate

from .._checks import check_ints
from .._config import Config
from ..compose import Program
from ..errors import ConfigError
from ..modules import MaskReadout, SurrogateGradientModule
from ..plan import TrainingPlan
from ..types import Logits, Mask, Probs
from ._auxiliary import AuxiliaryDataset, cache_outputs
from ._backends import StageRun, run_stages
from ._classification import Classification
from ._run_dir import RunDir
from ._search import SearchConfig, SearchResult, finished_trials, fit_objective, search
from ._supervised import FitConfig, FitResult, fit
from ._surrogate import SurrogateScore, surrogate_score, train_through_surrogate

__all__ = ["NMNModulewiseConfig", "NMNModulewiseResult", "nmn_find_unit", "train_nmn_modulewise"]

Batch = Mapping[str, Any]
#: the plan's name for the question prior
ENCODER = "encoder"
#: the plan's name for the mask-making unit (stem + the modules below the answering ones)
FIND = "find"



@dataclass
class NMNModulewiseConfig(Config):
    """Settings of :func:`train_nmn_modulewise`.

    Attributes:
        find: how the ``find`` unit trains through its SGM.
        heads: how each answering module trains from the cache.
        prior: how the question prior trains.
        sgm_rank: L, rank of the SGM's factorised weight.
        sgm_dropout: the SGM's dropout (also used for its MC-dropout score).
        search_trials: the Optuna trial budget of every module (0: no search), spent before the module
            trains: ``find``'s learning rate and SGM rank on its SGM validation loss, the question prior's and
            each answering module's learning rate on its own validation loss (the answering modules on
            ``valid`` run through the trained ``find``, cached beside the training cache). Needs ``valid``.
        search_examples: training examples per trial (the first ones; an answering module: the first ones
            of its cached examples).
        search_epochs: epochs per trial.
        search_lr: the range the searches of the question prior and the answering modules draw their
            learning rate from (log-uniform).
        cache_dtype: ``"float16"`` or ``"float32"``: how masks and features are cached.
    """

    find: FitConfig = field(default_factory=lambda: FitConfig(epochs=5, batch_size=64, lr=2e-3))
    heads: FitConfig = field(default_factory=lambda: FitConfig(epochs=10, batch_size=128, lr=3e-3))
    prior: FitConfig = field(default_factory=lambda: FitConfig(epochs=5, batch_size=64, lr=3e-3))
    sgm_rank: int = 8
    sgm_dropout: float = 0.2
    search_trials: int = 0
    search_examples: int = 1000
    search_epochs: int = 1
    search_lr: tuple[float, float] = (1e-4, 3e-2)
    cache_dtype: str = "float16"

    def __post_init__(self) -> None:
        check_ints(self, "sgm_rank", "search_examples", "search_epochs")
        check_ints(self, "search_trials", minimum=0)
        self.search_lr = tuple(self.search_lr)
        if len(self.search_lr) != 2 or not 0 < self.search_lr[0] < self.search_lr[1]:
            raise ConfigError(f"NMNModulewiseConfig.search_lr must be (low, high) with 0 < low < high, got "
                              f"{self.search_lr!r}")
        if not 0.0 <= self.sgm_dropout < 1.0:
            raise ConfigError(f"NMNModulewiseConfig.sgm_dropout must be in [0, 1), got {self.sgm_dropout!r}")
        if self.cache_dtype not in ("float16", "float32"):
            raise ConfigError(
                f"NMNModulewiseConfig.cache_dtype must be 'float16' or 'float32', got {self.cache_dtype!r}"
            )


@dataclass
class NMNModulewiseResult:
    """What :func:`train_nmn_modulewise` did.

    Attributes:
        run: the plan's execution; its ``timings`` hold the per-module and per-cache times and the
            sequential and parallel cost. A module's time is what its search's trials and its training took,
            a cache's what writing it took, as their checkpoints, study and manifest record them: a resumed
            run reports the cost of the whole run, not the time it took to resume. The stage and wall times
            are this call's.
        sgm_score: the ``find`` unit scored by its SGM on ``valid`` (``None`` without ``valid``).
        searches: module name -> its Optuna search (empty without ``search_trials``).
        params: module name -> the hyper-parameters it trained with (``lr``; ``find``: also ``rank``).
    """

    run: StageRun
    sgm_score: SurrogateScore | None
    searches: dict[str, SearchResult]
    params: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.run.to_dict(),
            "sgm_score": None if self.sgm_score is None else asdict(self.sgm_score),
            "searches": {name: {"best_params": found.best_params, "best_value": found.best_value,
                                "seconds": found.seconds,
                                "trials": [{"params": t["params"], "value": t["value"]} for t in found.trials]}
                         for name, found in self.searches.items()},
            "params": self.params,
        }


# ------------------------------------------------------------------------------------ program layouts


@dataclass(frozen=True)
class _Layout:
    """Where a program's answering module sits: the module call, the calls above it and the mask below it."""

    head: Program
    wrappers: tuple[str, ...]  # from the root down to the head
    below: Program


def _layout(program: Program, heads: Sequence[str]) -> _Layout:
    wrappers: list[str] = []
    node = program
    while node.name not in heads:
        if len(node.children) != 1:
            raise ConfigError(
                f"no answering module ({', '.join(heads)}) under a chain of one-input modules in {program}"
            )
        wrappers.append(node.name)
        node = node.children[0]
    if len(node.children) != 1:
        raise ConfigError(f"answering module {node.name!r} must read one mask, got {len(node.children)} in {program}")
    return _Layout(node, tuple(wrappers), node.children[0])


class _Parts:
    """The NMN's parts as module-wise training sees them: heads, wrappers, the ``find`` unit, answer types."""

    def __init__(self, model: nn.Module, heads: Sequence[str]) -> None:
        self.model = model
        self.library = model.library
        self.heads = tuple(h for h in heads if h in self.library)
        self.unit = nmn_find_unit(model, exclude=self.heads)
        inner = [n for n in self.unit if n != "stem"]
        self.mask_type = self.library.signature(inner[0]).output if inner else Mask()

    def layouts(self, programs: Sequence[Program]) -> list[_Layout]:
        return [_layout(p, self.heads) for p in programs]

    def masks(self, images: Tensor, layouts: Sequence[_Layout]) -> tuple[Tensor, Tensor]:
        """``masks: (B, H, W)`` under each answering module and ``features: (B, C, H, W)``."""
        features = self.model.stem(images)
        return self.library([lay.below for lay in layouts], features=features), features

    def head_target(self, answer: Tensor, layouts: Sequence[_Layout], n_answers: int) -> Tensor:
        """``(B,)`` the answer the answering module itself should give: the wrappers above it undone (they are
        parameter-free permutations of the answers that are their own inverse, as ``not``)."""
        target = answer.clone()
        for i, lay in enumerate(layouts):
            if lay.wrappers:
                scores = F.one_hot(answer[i : i + 1], n_answers).float()
                for name in lay.wrappers:
                    scores = self.library[name](scores)
                target[i] = scores.argmax(1)[0]
        return target

    def route(self, layouts: Sequence[_Layout]) -> Tensor:
        """``(B,)`` 0 where the answering module reads the features under the mask, 1 where it reads the map."""
        return torch.tensor([0 if self.library.signature(lay.head.name).context else 1 for lay in layouts])


def nmn_find_unit(model: nn.Module, *, exclude: Sequence[str] = ()) -> nn.ModuleDict:
    """The NMN's mask-making unit that module-wise training calls ``find``: the image stem and every library
    module whose output is not an answer (``find``, ``relate``, ``and``, ...), keyed ``"stem"`` and by name.

    The modules are the model's own (no copy): loading a state into the unit loads it into the model.

    Args:
        model: an :class:`~modnets.models.NMN` (``stem``, ``library``).
        exclude: library modules to leave out.
    """
    library = model.library
    inner = [n for n in library.names if n not in exclude and _is_mask_module(library, n)]
    return nn.ModuleDict({"stem": model.stem, **{n: library[n] for n in inner}})


def _is_mask_module(library, name: str) -> bool:
    out = library.signature(name).output
    return not isinstance(out, Probs | Logits)


def _log_probs(values: Tensor, answer_type: object) -> Tensor:
    if isinstance(answer_type, Probs):
        return torch.log(values.clamp_min(1e-8))
    return F.log_softmax(values, dim=1)


# ----------------------------------------------------------------------------------- the module jobs


class _HeadOnCache(nn.Module):
    """One answering module trained from cached masks (and features), through the wrappers above it."""

    def __init__(self, library, name: str, chains: Sequence[tuple[str, ...]]) -> None:
        super().__init__()
        self.head = library[name]
        self.library_wrappers = {n: library[n] for chain in chains for n in chain}
        self.chains = tuple(chains)
        self.answer_type = library.signature(name).output
        self.needs_features = bool(library.signature(name).context)

    def scores(self, batch: Batch) -> Tensor:
        mask = batch["mask"].float()
        context = {"features": batch["features"].float()} if self.needs_features else {}
        arg = batch["arg"] if self.head.arguments is not None else None
        out = self.head(mask, arg=arg, **context)
        chain_ids = batch["chain"]
        for c, chain in enumerate(self.chains):
            rows = (chain_ids == c).nonzero().flatten()
            if chain and len(rows):
                part = out.index_select(0, rows)
                for wrapper in reversed(chain):
                    part = self.library_wrappers[wrapper](part)
                out = out.index_copy(0, rows, part)
        return out

    @property
    def batch_keys(self) -> dict[str, str]:
        keys = {"mask": "(B, ...) cached input masks", "chain": "(B,) long index of the wrappers above the head"}
        if self.needs_features:
            keys["features"] = "(B, C, h, w) cached image features"
        if self.head.arguments is not None:
            keys["arg"] = "(B,) long argument ids"
        return keys

    def logits(self, batch: Batch) -> Tensor:
        """``(B, n_answers)`` the answers' log-probabilities (trained by :class:`Classification`)."""
        return _log_probs(self.scores(batch), self.answer_type)


def _sgm_inputs(parts: _Parts) -> Callable[[nn.Module, Batch], dict[str, Tensor]]:
    def inputs(unit: nn.Module, batch: Batch) -> dict[str, Tensor]:
        layouts = parts.layouts(batch["program"])
        mask, features = parts.masks(batch["image"], layouts)
        return {"mask": mask, "features": features, "route": parts.route(layouts)}

    return inputs


class _HeadTarget:
    """A collate function that adds ``head_answer`` (the answering module's own target) to each batch."""

    def __init__(self, collate: Callable[[list], Batch], parts: _Parts, n_answers: int) -> None:
        self.collate, self.parts, self.n_answers = collate, parts, n_answers

    def __call__(self, items: list) -> dict:
        batch = dict(self.collate(items))
        batch["head_answer"] = self.parts.head_target(batch["answer"], self.parts.layouts(batch["program"]),
                                                      self.n_answers)
        return batch


def _find_job(parts, train, valid, collate, config, n_answers, seed, run: RunDir):
    def make_sgm(rank: int) -> SurrogateGradientModule:
        probe = collate([train[0]])
        with torch.no_grad():
            features = parts.model.stem(probe["image"])
        grid = tuple(features.shape[2:])
        attention = "odds" if isinstance(parts.mask_type, Mask) else "sum"
        rank = min(rank, n_answers - 1)
        return SurrogateGradientModule(readout=MaskReadout(features.shape[1], grid, attention=attention),
                                       d_out=n_answers, rank=rank, dropout=config.sgm_dropout)

    target_collate = _HeadTarget(collate, parts, n_answers)

    def job() -> dict[str, Any]:
        lr, rank = config.find.lr, config.sgm_rank
        found = None
        if config.search_trials:
            found = _search_find(parts, train, valid, target_collate, config, make_sgm, n_answers, seed, run)
            lr, rank = found.best_params["lr"], found.best_params["rank"]
        torch.manual_seed(seed)
        sgm = make_sgm(rank)
        fit_config = FitConfig(**{**config.find.to_dict(), "lr": lr})
        done = train_through_surrogate(parts.unit, sgm, train, inputs=_sgm_inputs(parts), config=fit_config,
                                       collate=target_collate, target="head_answer", run=run, name=FIND)
        score = None
        if valid is not None:
            score = surrogate_score(parts.unit, sgm, valid, inputs=_sgm_inputs(parts), collate=target_collate,
                                    target="head_answer", samples=10)
        return {"state": parts.unit.state_dict(), "score": score, "search": found, "steps": done.steps,
                "params": {"lr": lr, "rank": rank}, "seconds": _cost(found, done)}

    return job


def _search_find(parts, train, valid, collate, config, make_sgm, n_answers, seed, run: RunDir):
    subset = Subset(train, range(min(config.search_examples, len(train))))
    initial = copy.deepcopy(parts.unit.state_dict())

    def objective(trial) -> float:
        lr = trial.suggest_float("lr", 3e-4, 1e-2, log=True)
        rank = trial.suggest_int("rank", 2, 16)
        parts.unit.load_state_dict(initial)
        torch.manual_seed(seed + trial.number)
        sgm = make_sgm(rank)
        fit_config = FitConfig(**{**config.find.to_dict(), "lr": lr, "epochs": config.search_epochs})
        train_through_surrogate(parts.unit, sgm, subset, inputs=_sgm_inputs(parts), config=fit_config,
                                collate=collate, target="head_answer", run=RunDir(progress=False),
                                name=f"trial{trial.number}")
        value = surrogate_score(parts.unit, sgm, valid, inputs=_sgm_inputs(parts), collate=collate,
                                target="head_answer", samples=10).loss
        return value if math.isfinite(value) else math.nan

    try:
        return _search(objective, FIND, config, seed, run)
    finally:
        parts.unit.load_state_dict(initial)


def _search(objective, name: str, config: NMNModulewiseConfig, seed: int, run: RunDir) -> SearchResult:
    """One module's Optuna study of ``config.search_trials`` trials, stored in ``search/NAME`` (a study left by
    an earlier run is continued with ``run.resume`` up to ``search_trials`` trials in all, else replaced)."""
    folder = run.folder("search") / name
    if not run.resume:
        shutil.rmtree(folder, ignore_errors=True)
    settings = SearchConfig(trials=config.search_trials, seed=seed, study_name=name, load_if_exists=run.resume)
    if run.resume:
        settings = replace(settings, trials=max(config.search_trials - finished_trials(settings, folder), 0))
    return search(objective, config=settings, directory=folder, progress=run.progress)


def _lr_search(name: str, module: nn.Module, build: Callable[[], nn.Module], train: Dataset, valid: Dataset,
               fit_config: FitConfig, collate, config: NMNModulewiseConfig, seed: int, run: RunDir) -> SearchResult:
    """Search the learning rate of ``module`` (trained as the objective ``build()`` wraps it), each trial from
    the same initial weights on the first ``search_examples`` training examples; the weights are restored."""
    initial = copy.deepcopy(module.state_dict())

    def objective(trial) -> nn.Module:
        module.load_state_dict(initial)
        torch.manual_seed(seed + trial.number)
        return build()

    def settings(trial) -> FitConfig:
        return FitConfig(**{**fit_config.to_dict(), "lr": trial.suggest_float("lr", *config.search_lr, log=True),
                            "epochs": config.search_epochs})

    subset = Subset(train, range(min(config.search_examples, len(train))))
    try:
        return _search(fit_objective(objective=objective, fit_config=settings, train=subset, valid=valid,
                                     collate=collate), name, config, seed, run)
    finally:
        module.load_state_dict(initial)


def _prior_job(model, train, valid, collate, config, seed, run: RunDir):
    prior = model.question_prior

    def job() -> dict[str, Any]:
        found, fit_config = None, config.prior
        if config.search_trials:
            found = _lr_search(ENCODER, prior, lambda: Classification(prior, target="answer"), train, valid,
                               config.prior, collate, config, seed, run)
            fit_config = FitConfig(**{**config.prior.to_dict(), "lr": found.best_params["lr"]})
        torch.manual_seed(seed)
        done = fit(Classification(prior, target="answer"), train, config=fit_config, collate=collate, run=run,
                   name=ENCODER)
        return {"state": prior.state_dict(), "steps": done.steps, "search": found, "params": {"lr": fit_config.lr},
                "seconds": _cost(found, done)}

    return job


def _head_rows(data: AuxiliaryDataset, parts: _Parts, name: str) -> list[int]:
    return (data.tensors["head"] == parts.heads.index(name)).nonzero().flatten().tolist()


def _head_job(parts, name, chains, cache_dir, valid_dir, config, seed, run: RunDir):
    def job() -> dict[str, Any]:
        data = AuxiliaryDataset(cache_dir, producer=parts.unit)
        rows = _head_rows(data, parts, name)
        module = parts.library[name]
        if not rows:
            return {"state": module.state_dict(), "steps": 0, "search": None, "params": {}, "seconds": 0.0}
        found, fit_config = None, config.heads
        if config.search_trials:
            valid = AuxiliaryDataset(valid_dir, producer=parts.unit)
            valid_rows = _head_rows(valid, parts, name)
            if valid_rows:
                found = _lr_search(name, module, lambda: Classification(_HeadOnCache(parts.library, name, chains),
                                                                        target="answer"),
                                   Subset(data, rows), Subset(valid, valid_rows), config.heads, default_collate,
                                   config, seed, run)
                fit_config = FitConfig(**{**config.heads.to_dict(), "lr": found.best_params["lr"]})
        torch.manual_seed(seed)
        head = _HeadOnCache(parts.library, name, chains)
        done = fit(Classification(head, target="answer"), Subset(data, rows), config=fit_config,
                   collate=default_collate, run=run, name=name)
        return {"state": module.state_dict(), "steps": done.steps, "search": found, "params": {"lr": fit_config.lr},
                "seconds": _cost(found, done)}

    return job


def _cost(found: SearchResult | None, done: FitResult) -> float:
    """What a module's training cost: its search's trials and its training, both as their records count them
    (a resumed search or training included what it had spent before)."""
    return (found.seconds if found is not None else 0.0) + done.seconds


# -------------------------------------------------------------------------------------------- the plan


def train_nmn_modulewise(
    model: nn.Module,
    train: Dataset,
    *,
    plan: TrainingPlan,
    collate: Callable[[list], Batch],
    run: RunDir,
    config: NMNModulewiseConfig | None = None,
    valid: Dataset | None = None,
    backend: str = "sequential",
    address: str | None = None,
    seed: int = 0,
) -> NMNModulewiseResult:
    """Train an NMN module by module along its training plan; its parts are trained in place.

    Args:
        model: an :class:`~modnets.models.NMN` (``stem``, ``library``, ``question_prior``).
        train: training examples (``image``, ``program``, ``answer``, ``question`` batches).
        plan: the plan of :func:`~modnets.models.nmn_assembly` (with ``prior=True`` when the model has a
            question prior): ``encoder`` and ``find`` then the answering modules; the answering modules the
            library lacks (``count`` for easy-vqa) get no data and are left as they are.
        collate: turns a list of examples into a batch.
        run: the run folder: logs and checkpoints of every module by its name, the cache (``cache/find``)
            and the search (``search/``); whether to resume every training and to show progress bars.
        config: the trainings' settings.
        valid: held-out examples for the SGM score and the search.
        backend: how a stage's modules run: ``"sequential"``, ``"processes"`` or ``"ray"`` (see
            :func:`~modnets.train.run_stages`).
        address: the Ray cluster (``backend="ray"``).
        seed: seeds each module's initialisation of its training.

    Returns:
        the times of every module and cache, the SGM score of ``find``, its search.

    Raises:
        ConfigError: a plan module this function does not know, a program without an answering module, or a
            model with a question prior and a plan without ``encoder`` (or the reverse).
    """
    config = config or NMNModulewiseConfig()
    planned = [m for stage in plan.stages for m in stage.modules]
    has_prior = getattr(model, "question_prior", None) is not None
    if (ENCODER in planned) != has_prior:
        raise ConfigError(
            f"the plan {'has' if ENCODER in planned else 'has no'} {ENCODER!r} but the model "
            f"{'has' if has_prior else 'has no'} question prior; use nmn_assembly(prior={has_prior})"
        )
    heads = [m for m in planned if m not in (ENCODER, FIND)]
    unknown = [m for m in heads if m not in model.library]
    parts = _Parts(model, [h for h in heads if h not in unknown])
    n_answers = next(model.library.signature(h).output.size for h in parts.heads)
    chains = sorted({_layout(p, parts.heads).wrappers for p in _programs(train)})
    if config.search_trials and valid is None:
        raise ConfigError("NMNModulewiseConfig.search_trials > 0 needs a validation set (valid=...)")
    cache_dir = run.folder("cache") / FIND
    valid_dir = run.folder("cache") / f"{FIND}_valid"

    jobs: dict[str, Callable[[], Any]] = {
        FIND: _find_job(parts, train, valid, collate, config, n_answers, seed, run),
    }
    if has_prior:
        jobs[ENCODER] = _prior_job(model, train, valid, collate, config, seed, run)
    for name in heads:
        if name in unknown:
            jobs[name] = _no_data
        else:
            jobs[name] = _head_job(parts, name, chains, cache_dir, valid_dir, config, seed, run)

    dtype = getattr(torch, config.cache_dtype)

    def outputs(batch: Batch) -> dict[str, Tensor]:
        layouts = parts.layouts(batch["program"])
        mask, features = parts.masks(batch["image"], layouts)
        return {
            "mask": mask.to(dtype), "features": features.to(dtype),
            "head": torch.tensor([parts.heads.index(lay.head.name) for lay in layouts]),
            "arg": torch.tensor([_arg_index(parts.library, lay.head) for lay in layouts]),
            "chain": torch.tensor([chains.index(lay.wrappers) for lay in layouts]),
        }

    def cache() -> float:
        """Write find's caches and return what they cost (as their manifests record it: a kept cache's too)."""
        written = []
        if config.search_trials:  # the answering modules' searches score on valid through the trained find
            written.append(cache_outputs(parts.unit, valid, directory=valid_dir, outputs=outputs, collate=collate,
                                         targets=("answer",), name=f"{FIND}_valid", progress=run.progress))
        written.append(cache_outputs(parts.unit, train, directory=cache_dir, outputs=outputs, collate=collate,
                                     targets=("answer",), name=FIND, progress=run.progress))
        return sum(manifest.seconds for manifest in written)

    def collect(name: str, result: dict[str, Any]) -> None:
        if name == FIND:
            parts.unit.load_state_dict(result["state"])
        elif name == ENCODER:
            model.question_prior.load_state_dict(result["state"])
        elif name not in unknown:
            model.library[name].load_state_dict(result["state"])

    stages = run_stages(plan, partial(_call, jobs), caches={FIND: cache}, collect=collect, backend=backend,
                        address=address, progress=run.progress)
    results = stages.results
    # the cost of each module and cache as their records count it, so that a resumed run reports the whole run's
    # cost and not the time it took to resume
    stages.timings.module_seconds.update({name: result["seconds"] for name, result in results.items()})
    stages.timings.cache_seconds.update(stages.cache_results)
    return NMNModulewiseResult(run=stages, sgm_score=results[FIND]["score"],
                               searches={k: r["search"] for k, r in results.items() if r.get("search") is not None},
                               params={k: r["params"] for k, r in results.items() if r.get("params")})


def _call(jobs: Mapping[str, Callable[[], Any]], name: str) -> Any:
    return jobs[name]()


def _no_data() -> dict[str, Any]:
    return {"state": None, "steps": 0, "search": None, "params": {}, "seconds": 0.0}


def _arg_index(library, call: Program) -> int:
    module, index = library.resolve(call)
    return -1 if index is None else index


def _programs(dataset: Dataset) -> Sequence[Program]:
    programs = getattr(dataset, "programs", None)
    if programs is None:
        programs = [dataset[i]["program"] for i in range(len(dataset))]
    return programs
