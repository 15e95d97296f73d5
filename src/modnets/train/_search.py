"""Per-module hyper-parameter search: an Optuna study on a module's own validation loss (or its SGM loss).

The search space is the objective's own business: it receives an :class:`optuna.trial.Trial`, draws what it
needs with ``trial.suggest_float(...)`` / ``suggest_int`` / ``suggest_categorical``, trains and returns the
number to minimise. :func:`search` runs the study, stores it (an embedded SQLite file by default, any
SQLAlchemy database URL for a study shared between machines) and returns the outcome as plain records.
:func:`fit_objective` builds the common objective "train this module with :func:`~modnets.train.fit` and
return its validation loss".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .._checks import check_ints
from .._config import Config
from ..errors import ConfigError, NumericalError
from ._device import device_of, to_device
from ._objective import Objective, check_objective
from ._run_dir import RunDir
from ._supervised import FitConfig, fit

if TYPE_CHECKING:
    import optuna

__all__ = ["SearchConfig", "SearchResult", "fit_objective", "search", "validation_loss"]

Batch = Mapping[str, Any]
#: What :func:`search` optimises: a trial in, its value (the validation loss) out.
TrialObjective = Callable[["optuna.trial.Trial"], float]

DIRECTIONS = ("minimize", "maximize")


@dataclass
class SearchConfig(Config):
    """Settings of one :func:`search` (one Optuna study).

    Attributes:
        trials: trials to run in this call (a continued study keeps the trials it already has; 0 runs none
            and returns the stored study's best).
        seed: seeds the default sampler (TPE), so that a search on a deterministic objective repeats.
        timeout: stop starting new trials after this many seconds of this call (``None``: no limit).
        budget: stop starting new trials once the study's finished trials, earlier calls' included, have taken
            this many seconds (``None``: no limit). Unlike ``timeout`` it is read from the stored trials, so a
            search killed and continued spends the same budget as one that ran through, and a continued
            search that had spent it runs no more trials.
        storage: a SQLAlchemy database URL (``sqlite:///path/study.db``, ``postgresql://user@host/db``, ...);
            ``None`` stores the study in an embedded SQLite file ``<directory>/<study_name>.db``.
        study_name: the study's name in the storage (a module's name is a good one).
        direction: ``"minimize"`` (a loss) or ``"maximize"``.
        load_if_exists: continue a study of the same name found in the storage; when false, such a study
            is an error rather than silently mixed with this one.
    """

    trials: int = 20
    seed: int = 0
    timeout: float | None = None
    budget: float | None = None
    storage: str | None = None
    study_name: str = "search"
    direction: str = "minimize"
    load_if_exists: bool = False

    def __post_init__(self) -> None:
        check_ints(self, "trials", minimum=0)
        check_ints(self, "seed", minimum=0)
        if self.timeout is not None and (isinstance(self.timeout, bool) or not self.timeout > 0):
            raise ConfigError(f"SearchConfig.timeout must be > 0 seconds or None, got {self.timeout!r}")
        if self.budget is not None and (isinstance(self.budget, bool) or not self.budget > 0):
            raise ConfigError(f"SearchConfig.budget must be > 0 seconds or None, got {self.budget!r}")
        if not isinstance(self.study_name, str) or not self.study_name.strip():
            raise ConfigError(f"SearchConfig.study_name must be a non-empty string, got {self.study_name!r}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"SearchConfig.direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not isinstance(self.load_if_exists, bool):
            raise ConfigError(f"SearchConfig.load_if_exists must be a bool, got {self.load_if_exists!r}")
        if self.storage is not None:
            _check_url(self.storage)

    def storage_url(self, directory: str | Path | None) -> str:
        """The database URL of the study: ``storage``, or the embedded SQLite file under ``directory``.

        Raises:
            ConfigError: neither ``storage`` nor a ``directory`` is given.
        """
        if self.storage is not None:
            return self.storage
        if directory is None:
            raise ConfigError(
                "SearchConfig.storage is None and no directory was given: pass the run folder (the study's "
                "SQLite file goes there) or a database URL in SearchConfig.storage"
            )
        file_name = re.sub(r"[^A-Za-z0-9_.-]", "_", self.study_name) + ".db"
        return f"sqlite:///{(Path(directory) / file_name).resolve()}"


def finished_trials(config: SearchConfig, directory: str | Path | None = None) -> int:
    """How many trials of the study ``config`` names have finished (complete, pruned or failed) in its storage;
    0 when there is no such study. For a resumed run that must end with ``trials`` trials in all."""
    import optuna

    url = config.storage_url(directory)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return 0
    with _quiet_optuna():
        try:
            study = optuna.load_study(study_name=config.study_name, storage=_open_storage(url))
        except KeyError:  # no study of that name in the storage
            return 0
    return sum(t.state.is_finished() for t in study.trials)


def _check_url(url: object) -> None:
    """Raise :class:`ConfigError` unless ``url`` parses as a database URL of a dialect SQLAlchemy knows."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    accepted = "a database URL such as 'sqlite:///runs/search.db' or 'postgresql://user:password@host/db'"
    if not isinstance(url, str):
        raise ConfigError(f"SearchConfig.storage must be {accepted} or None, got {url!r}")
    try:
        make_url(url).get_dialect()
    except ArgumentError as e:  # NoSuchModuleError (unknown dialect) is one too
        raise ConfigError(f"SearchConfig.storage must be {accepted}, got {url!r} ({e})") from None


@dataclass
class SearchResult:
    """What :func:`search` found.

    Attributes:
        best_params: the best trial's parameters (as the objective drew them).
        best_value: the best trial's objective value.
        best_trial: the best trial's number in the study.
        trials: every trial of the study (earlier calls' included when it was continued), as plain records:
            ``number``, ``state`` (``"COMPLETE"``, ``"FAIL"``, ``"PRUNED"``, ...), ``value``, ``params``,
            ``seconds`` and the ``user_attrs`` the objective set.
        seconds: what the search cost: the time its finished trials took, earlier calls' included when the
            study was continued (so a resumed search counts what it had spent before).
        storage: the study's database URL.
        study_name: the study's name.
    """

    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    trials: list[dict[str, Any]]
    seconds: float
    storage: str
    study_name: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search(
    objective: TrialObjective,
    *,
    config: SearchConfig,
    directory: str | Path | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    catch: tuple[type[Exception], ...] = (NumericalError,),
    progress: bool = True,
) -> SearchResult:
    """Run an Optuna study of ``config.trials`` trials on ``objective`` and return its best trial.

    Args:
        objective: takes an :class:`optuna.trial.Trial`, draws its hyper-parameters from it
            (``trial.suggest_float("lr", 1e-4, 1e-1, log=True)``), trains, and returns the validation loss of
            the module (its own, or that of its surrogate gradient module).
        config: trials, sampler seed, timeout and budget, storage, study name, direction, whether to continue.
        directory: where the embedded SQLite file goes when ``config.storage`` is ``None`` (created).
        sampler: an Optuna sampler (default: TPE seeded with ``config.seed``).
        pruner: an Optuna pruner, for objectives that call ``trial.report`` / ``trial.should_prune``.
        catch: exception types that fail a trial without stopping the search (by default a diverged
            training, :class:`~modnets.errors.NumericalError`); the trial's ``user_attrs["error"]`` keeps the
            message. Any other exception stops the search.
        progress: show a progress bar with the best value so far. Optuna's per-trial log lines are silenced
            during the search (warnings still show).

    Returns:
        the best parameters and value, every trial as a plain record, the trials' time, the storage and name.

    Raises:
        ConfigError: no storage and no directory, a storage that cannot be opened, or an existing study of
            that name without ``config.load_if_exists``.
        NumericalError: no trial of the study finished with a finite value.

    Example:
        >>> import tempfile
        >>> result = search(lambda t: (t.suggest_float("x", -3, 3) - 1) ** 2,
        ...                 config=SearchConfig(trials=20, study_name="quadratic"),
        ...                 directory=tempfile.mkdtemp(), progress=False)
        >>> abs(result.best_params["x"] - 1) < 0.5
        True
    """
    import optuna

    url = config.storage_url(directory)
    if config.storage is None:
        Path(directory).mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
    with _quiet_optuna():
        storage = _open_storage(url)
        try:
            study = optuna.create_study(
                storage=storage,
                sampler=sampler if sampler is not None else optuna.samplers.TPESampler(seed=config.seed),
                pruner=pruner,
                study_name=config.study_name,
                direction=config.direction,
                load_if_exists=config.load_if_exists,
            )
        except optuna.exceptions.DuplicatedStudyError:
            raise ConfigError(
                f"SearchConfig.study_name: a study {config.study_name!r} already exists in {url}; set "
                "SearchConfig.load_if_exists=True to continue it, or choose another study_name"
            ) from None
        if study.direction.name.lower() != config.direction:
            raise ConfigError(
                f"SearchConfig.direction is {config.direction!r} but the stored study {config.study_name!r} "
                f"is to {study.direction.name.lower()}"
            )
        bar = tqdm(total=config.trials, desc=f"search {config.study_name}", disable=not progress, leave=False,
                   dynamic_ncols=True)

        def spent(study: optuna.study.Study) -> float:
            return sum(r["seconds"] or 0.0 for r in map(_record, study.trials) if r["state"] != "RUNNING")

        def update(study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> None:
            bar.update()
            if config.budget is not None and spent(study) >= config.budget:
                study.stop()
            finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if finished:
                bar.set_postfix_str(f"best {study.best_value:.4g}", refresh=False)

        def guarded(trial: optuna.trial.Trial) -> float:
            # Optuna would log a whole traceback for each caught exception; a failed trial is one line
            try:
                return objective(trial)
            except catch as e:
                trial.set_user_attr("error", f"{type(e).__name__}: {e}")
                return math.nan

        try:
            if config.budget is None or spent(study) < config.budget:
                study.optimize(guarded, n_trials=config.trials, timeout=config.timeout, callbacks=[update])
        finally:
            bar.close()
    records = [_record(t) for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        states = ", ".join(f"{r['number']}: {r['state']}" for r in records)
        raise NumericalError(
            f"no trial of study {config.study_name!r} finished with a finite value (trials {states})",
            step=0, module=config.study_name, quantity="objective value",
        )
    best = study.best_trial
    return SearchResult(best_params=dict(best.params), best_value=float(best.value), best_trial=best.number,
                        trials=records, seconds=sum(r["seconds"] or 0.0 for r in records), storage=url,
                        study_name=config.study_name)


def _open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage at ``url``; failures to connect or to find a database driver become a ConfigError."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return optuna.storages.RDBStorage(url)
    except (SQLAlchemyError, ImportError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"SearchConfig.storage: cannot open the study database {url!r}: {first}") from e


def _record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    seconds = None
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": dict(trial.params),
        "seconds": seconds,
        "user_attrs": dict(trial.user_attrs),
    }


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs one INFO line per trial; keep warnings and errors only, then restore the user's level."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(before, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


# --------------------------------------------------------------------------- the objective for fit()


@torch.no_grad()
def validation_loss(
    objective: Objective,
    dataset: Dataset,
    *,
    collate: Callable[[list], Batch],
    batch_size: int = 256,
) -> float:
    """The mean of an objective's ``"loss"`` term over a data set, each batch weighted by its size, in eval
    mode, on the objective's device.

    Args:
        objective: the objective (e.g. :class:`~modnets.train.Classification` of a model).
        dataset: the validation examples.
        collate: turns a list of examples into a batch.
        batch_size: examples per forward pass.
    """
    check_objective(objective)
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ConfigError("the validation set is empty")
    device = device_of(objective)
    was_training = objective.training
    objective.eval()
    total = 0.0
    try:
        for lo in range(0, n, batch_size):
            examples = [dataset[i] for i in range(lo, min(lo + batch_size, n))]
            total += float(objective.loss(to_device(collate(examples), device))["loss"]) * len(examples)
    finally:
        objective.train(was_training)
    return total / n


def fit_objective(
    *,
    objective: Callable[[optuna.trial.Trial], Objective],
    fit_config: Callable[[optuna.trial.Trial], FitConfig],
    train: Dataset,
    valid: Dataset,
    collate: Callable[[list], Batch],
) -> TrialObjective:
    """The trial objective "train a fresh objective with :func:`~modnets.train.fit` and return its validation
    loss", for :func:`search`.

    Each trial builds the training objective with ``objective(trial)`` (a fresh model wrapped in its
    :class:`~modnets.train.Objective`) and its training settings with ``fit_config(trial)``; both may draw
    from the trial (``trial.suggest_int("hidden", 8, 64)``, ``trial.suggest_float("lr", ...)``). A diverged
    training raises :class:`~modnets.errors.NumericalError`, which :func:`search` records as a failed trial.
    The trial's user attributes get ``steps`` and ``fit_seconds``.

    Args:
        objective: builds what to train for a trial.
        fit_config: the :class:`FitConfig` of a trial.
        train: training examples.
        valid: validation examples (the value is the mean loss on them).
        collate: turns a list of examples into a batch.

    Returns:
        a trial objective for :func:`search`.
    """

    def trial_value(trial: optuna.trial.Trial) -> float:
        built = objective(trial)
        done = fit(built, train, config=fit_config(trial), collate=collate, run=RunDir(progress=False),
                   name=f"trial{trial.number}")
        trial.set_user_attr("steps", done.steps)
        trial.set_user_attr("fit_seconds", done.seconds)
        value = validation_loss(built, valid, collate=collate)
        return value if math.isfinite(value) else math.nan

    return trial_value
