"""Running the stages of a training plan: stages in order, the modules of a stage in parallel.

A training plan (:class:`~modnets.plan.TrainingPlan`, from ``modnets.analysis.dependencies(...).plan``)
lists stages of modules that can train at the same time; a stage starts when the one before it has
finished, because its modules read what the earlier ones wrote (weights, auxiliary data sets).
:func:`run_stages` runs one job per module, with one of three backends:

- ``backend="sequential"`` (the default): a plain loop in this process; nothing is started.
- ``backend="processes"``: one worker process per module of a stage (at most ``workers`` at a time), each
  with ``num_cpus`` torch threads. The workers are forked from this process when their stage starts, so a
  job sees this process as it is then (the weights collected from the earlier stages included) and is
  inherited, not pickled; its result travels back pickled. Where the platform cannot fork, the workers
  are spawned, and the job must then pickle too.
- ``backend="ray"``: one Ray task per module, on the cluster at ``address`` or, without one, on a local
  Ray instance started here with a few CPUs and shut down afterwards. Ray is an optional dependency
  (``pip install modnets[ray]``).

After each stage, in this process and in plan order, ``collect(name, result)`` takes every job's result
(where results come back from other processes, this is where the caller loads the returned weights into
its modules), then the auxiliary data sets the plan writes after that stage are cached with the caller's
``caches`` functions. Jobs talk to each other through this process or through files (the run folder), not
through return values: a job's result is returned to the caller, never passed to the next stage.

A failing job stops the run: its own exception is raised here, with its type and attributes, its message
prefixed with the module's name and, when it crossed a process boundary, the remote traceback as a note.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from .._threads import num_threads
from ..errors import ConfigError, MissingDependencyError
from ..plan import Stage, TrainingPlan
from ._timings import StageTimings

__all__ = ["BACKENDS", "StageRun", "check_backend", "run_stages"]

#: the accepted values of ``backend``
BACKENDS = ("sequential", "processes", "ray")

Job = Callable[[str], Any]
Plan = TrainingPlan | Sequence[Stage | Sequence[str]]

# Ray's smallest object store is 75 MiB; results are small (paths, metrics, a few tensors), and a large
# default would reserve shared memory that the jobs themselves need.
_OBJECT_STORE_BYTES = 128 * 1024**2


@dataclass
class StageRun:
    """What :func:`run_stages` did.

    Attributes:
        backend: the backend that ran the jobs.
        results: module name -> what its job returned, in plan order.
        timings: the measured times of every module, cache and stage, and both costs.
        cache_results: producer name -> what its cache function returned (e.g. the manifest).
        workers: the most jobs that ran at once: 1 for ``"sequential"``, the worker processes of the widest
            stage for ``"processes"``, ``None`` for ``"ray"`` (the cluster decides).
        start_method: how the worker processes started (``"fork"`` or ``"spawn"``; ``None`` for the other
            backends).
    """

    backend: str
    results: dict[str, Any]
    timings: StageTimings
    cache_results: dict[str, Any] = field(default_factory=dict)
    workers: int | None = 1
    start_method: str | None = None

    @property
    def stages(self) -> list[list[str]]:
        """The module names of each stage, in order."""
        return self.timings.stages

    def to_dict(self) -> dict[str, Any]:
        """The backend and the timings as a JSON-ready dict (job and cache results left out)."""
        return {"backend": self.backend, "workers": self.workers, **self.timings.to_dict()}


def check_backend(backend: object) -> str:
    """``backend`` if it is one of :data:`BACKENDS`; raises :class:`ConfigError` listing them otherwise."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    return str(backend)


def run_stages(
    plan: Plan,
    job: Job,
    *,
    backend: str = "sequential",
    collect: Callable[[str, Any], None] | None = None,
    caches: Mapping[str, Callable[[], Any]] | None = None,
    workers: int | None = None,
    address: str | None = None,
    num_cpus: int = 1,
    progress: bool = True,
) -> StageRun:
    """Run ``job(name)`` for every module of a training plan: stages in order, a stage's modules in parallel.

    Args:
        plan: a :class:`~modnets.plan.TrainingPlan`, or the stages themselves: a sequence of stages, each a
            :class:`~modnets.plan.Stage` or a sequence of module names.
        job: trains one module, given its name, and returns something small (a path, metrics, weights).
            With ``backend="ray"`` it and its result must pickle (cloudpickle): a function of an importable
            module (or a :func:`functools.partial` of one) is sent by reference and imported by the workers;
            one defined in the script being run is sent by value. With ``backend="processes"`` its result
            must pickle.
        backend: ``"sequential"``, ``"processes"`` or ``"ray"``.
        collect: ``collect(name, result)``, called in this process for every job of a stage once the stage
            is done, in plan order, before the stage's caches are written.
        caches: producer name -> a callable without arguments that writes the producer's auxiliary data set
            (e.g. with :func:`~modnets.train.cache_outputs`), called in this process after the stage the plan
            names for it; one for each auxiliary data set of the plan. ``None``: the plan's auxiliary data
            sets are the caller's business.
        workers: ``backend="processes"`` only: the most worker processes at once (default: one per CPU core,
            at most one per module of the stage).
        address: ``backend="ray"`` only: the cluster to connect to (``"auto"``, ``"ray://host:10001"``,
            ...); ``None`` starts a local Ray (unless this process has already initialised Ray, which is
            then used as it is).
        num_cpus: CPUs of each job: the torch thread count of each worker process or Ray task (reserved
            by the task on Ray); the sequential backend leaves this process's setting alone.
        progress: show a progress bar over the modules.

    Returns:
        the results, what the caches returned, and the timings.

    Raises:
        ConfigError: an unknown backend, a bad ``num_cpus`` or ``workers``, stages that are not lists of
            distinct names, an option of another backend (``address`` without Ray, ``workers`` without
            processes), ``caches`` with plain stages, or caches that do not match the plan's auxiliary data
            sets.
        MissingDependencyError: ``backend="ray"`` without Ray installed.
        Exception: the first failing job's own exception type, its message prefixed with the module's name.

    Example:
        >>> run = run_stages([["a", "b"], ["c"]], str.upper, progress=False)
        >>> run.results
        {'a': 'A', 'b': 'B', 'c': 'C'}
        >>> len(run.timings.stage_seconds)
        2
    """
    check_backend(backend)
    stages = _stages_of(plan)
    auxiliary = _auxiliary_of(plan, caches)
    if not isinstance(num_cpus, int) or isinstance(num_cpus, bool) or num_cpus < 1:
        raise ConfigError(f"num_cpus must be an int >= 1, got {num_cpus!r}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ConfigError(f"workers must be an int >= 1 or None, got {workers!r}")
    if address is not None and backend != "ray":
        raise ConfigError(f"address={address!r} is a Ray cluster address; it needs backend='ray', got {backend!r}")
    if workers is not None and backend != "processes":
        raise ConfigError(f"workers={workers!r} counts worker processes; it needs backend='processes', got {backend!r}")

    start = time.perf_counter()
    timings = StageTimings(stages=stages)
    run = StageRun(backend=backend, results={}, timings=timings)
    width = max(len(s) for s in stages)
    if backend == "sequential":
        runner: _Runner = _Sequential(job)
    elif backend == "processes":
        runner = _Processes(job, workers=workers, threads=num_cpus)
    else:
        runner = _Ray(job, address=address, num_cpus=num_cpus, width=width)
    cache_fns = dict(caches or {})
    bar = tqdm(total=sum(len(s) for s in stages), desc=f"modules ({backend})", disable=not progress, leave=False,
               dynamic_ncols=True)
    with bar, runner:
        for index, stage in enumerate(stages, 1):
            bar.set_postfix_str(f"stage {index}/{len(stages)}")
            startup, stage_start = runner.startup_seconds, time.perf_counter()
            outcomes = runner.run(stage, bar)
            timings.stage_seconds.append(time.perf_counter() - stage_start - (runner.startup_seconds - startup))
            for name in stage:  # plan order, not finishing order
                run.results[name] = outcomes[name].result
                timings.module_seconds[name] = outcomes[name].seconds
            if collect is not None:
                for name in stage:
                    collect(name, run.results[name])
            for producer in (p for p, after in auxiliary if after == index):
                cache_start = time.perf_counter()
                run.cache_results[producer] = cache_fns[producer]()
                timings.cache_seconds[producer] = time.perf_counter() - cache_start
                timings.cache_after[producer] = index
    timings.startup_seconds = runner.startup_seconds
    run.workers, run.start_method = runner.workers, runner.start_method
    timings.wall_seconds = time.perf_counter() - start
    return run


# ------------------------------------------------------------------------------------------- the backends


@dataclass
class _Outcome:
    """What one job left: its result and time, or its failure."""

    name: str
    result: Any
    seconds: float
    failure: _Failure | None = None


class _Runner(ABC):
    """A backend: ``with runner:`` starts and stops it, ``runner.run(stage, bar)`` runs one stage's jobs and
    returns their outcomes by name, raising the first job's failure."""

    startup_seconds: float = 0.0
    workers: int | None = 1
    start_method: str | None = None

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @abstractmethod
    def run(self, stage: list[str], bar: tqdm) -> dict[str, _Outcome]: ...


class _Sequential(_Runner):
    def __init__(self, job: Job) -> None:
        self.job = job

    def run(self, stage: list[str], bar: tqdm) -> dict[str, _Outcome]:
        outcomes = {}
        for name in stage:
            start = time.perf_counter()
            try:
                result = self.job(name)
            except Exception as e:
                raise _named_from(e, name) from e
            outcomes[name] = _Outcome(name, result, time.perf_counter() - start)
            bar.update()
        return outcomes


class _Processes(_Runner):
    """A pool of worker processes per stage, forked when the stage starts (so that each stage's workers see
    what the caller collected from the stages before), closed when it ends."""

    def __init__(self, job: Job, *, workers: int | None, threads: int) -> None:
        self.job, self.most, self.threads = job, workers, threads
        methods = multiprocessing.get_all_start_methods()
        # As PyTorch's data-loader workers: fork where the platform has it (no second import of torch, and
        # the job need not pickle), else spawn.
        self.start_method = "fork" if "fork" in methods else "spawn"
        self.workers = 0

    def run(self, stage: list[str], bar: tqdm) -> dict[str, _Outcome]:
        n = min(len(stage), self.most or os.cpu_count() or 1)
        self.workers = max(self.workers or 0, n)
        start = time.perf_counter()
        context = multiprocessing.get_context(self.start_method)
        pool = context.Pool(n, initializer=_start_worker, initargs=(self.job, self.threads))
        self.startup_seconds += time.perf_counter() - start
        outcomes: dict[str, _Outcome] = {}
        try:
            for packed in pool.imap_unordered(_call_in_worker, stage):
                outcome = pickle.loads(packed)
                if outcome.failure is not None:
                    _raise_failure(outcome)
                outcomes[outcome.name] = outcome
                bar.update()
        except BaseException:
            pool.terminate()  # a job failed: the rest of its stage is of no use
            raise
        else:
            pool.close()
        finally:
            pool.join()
        return outcomes


class _Ray(_Runner):
    workers = None

    def __init__(self, job: Job, *, address: str | None, num_cpus: int, width: int) -> None:
        self.job, self.address, self.num_cpus, self.width = job, address, num_cpus, width
        self.started = False

    def __enter__(self) -> _Ray:
        self.ray = ray = _import_ray()
        start = time.perf_counter()
        if not ray.is_initialized():
            # the jobs' output (progress bars, prints) stays in the workers' log files
            options: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR)
            if self.address is None:
                # a small local instance: enough CPUs for the widest stage, never more than the machine has
                cpus = max(self.num_cpus, min(os.cpu_count() or 1, self.num_cpus * self.width))
                options.update(num_cpus=cpus, object_store_memory=_OBJECT_STORE_BYTES, include_dashboard=False)
            else:
                options.update(address=self.address)
            ray.init(**options)
            self.started = True
        self.startup_seconds = time.perf_counter() - start
        self.task = ray.remote(num_cpus=self.num_cpus, max_retries=0)(_call)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.ray.shutdown()

    def run(self, stage: list[str], bar: tqdm) -> dict[str, _Outcome]:
        ray = self.ray
        pending = [self.task.remote(self.job, name, threads=self.num_cpus) for name in stage]
        outcomes: dict[str, _Outcome] = {}
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                outcome = ray.get(done[0])
                if outcome.failure is not None:
                    _raise_failure(outcome)
                outcomes[outcome.name] = outcome
                bar.update()
        finally:
            for ref in pending:  # a job failed: the rest of its stage is of no use
                ray.cancel(ref)
        return outcomes


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise MissingDependencyError(
            "backend='ray' needs Ray, which is not installed: pip install 'modnets[ray]' (or pip install ray)"
        ) from e
    return ray


# -------------------------------------------------------------------------------------------- one job


@dataclass
class _Failure:
    """A job's exception in a form that always travels between processes: its class, ``args`` and
    attributes (exceptions with keyword-only constructor arguments do not unpickle), and its traceback."""

    kind: type
    args: tuple
    state: dict[str, Any]
    traceback: str


def _call(job: Job, name: str, *, threads: int) -> _Outcome:
    """Run one job in a worker with ``threads`` torch threads, timed; its exception is returned, not raised,
    to reach the caller intact."""
    start = time.perf_counter()
    try:
        with num_threads(threads):
            result = job(name)
    except Exception as e:
        failure = _Failure(type(e), e.args, dict(vars(e)), traceback.format_exc())
        try:
            pickle.loads(pickle.dumps(failure))
        except Exception:  # parts that cannot travel: keep the type's name and the message
            failure = _Failure(RuntimeError, (f"{type(e).__name__}: {e}",), {}, failure.traceback)
        return _Outcome(name, None, time.perf_counter() - start, failure)
    return _Outcome(name, result, time.perf_counter() - start)


#: the job of this worker process and its thread count (``"processes"`` backend), set when the worker starts
_worker_job: tuple[Job, int] | None = None


def _start_worker(job: Job, threads: int) -> None:
    global _worker_job
    _worker_job = (job, threads)


def _call_in_worker(name: str) -> bytes:
    """The job's outcome, pickled here with the plain pickler: tensors then travel as bytes through the pool's
    pipe. (The pool's own pickler would move them to shared memory and pass file descriptors, which hangs in
    ``_share_fd_cpu_`` in a worker forked from a parent that has trained.)"""
    assert _worker_job is not None, "a worker process runs jobs only after _start_worker"
    job, threads = _worker_job
    return pickle.dumps(_call(job, name, threads=threads))


def _named(kind: type, args: tuple, state: dict[str, Any], name: str) -> BaseException:
    """A new exception of the job's type and attributes, its message prefixed with the module's name."""
    error = kind.__new__(kind)  # not kind(*args): constructors may take other arguments than ``args``
    error.__dict__.update(state)
    message = f"module {name!r}: {args[0]}" if args else f"module {name!r}: {kind.__name__}"
    error.args = (message, *args[1:])
    return error


def _named_from(e: Exception, name: str) -> BaseException:
    return _named(type(e), e.args, dict(vars(e)), name)


def _raise_failure(outcome: _Outcome) -> None:
    failure = outcome.failure
    assert failure is not None
    error = _named(failure.kind, failure.args, failure.state, outcome.name)
    error.add_note(f"traceback of the job of module {outcome.name!r}:\n{failure.traceback.rstrip()}")
    raise error


# ------------------------------------------------------------------------------------------------ stages


def _stages_of(plan: Plan) -> list[list[str]]:
    """The stages of a plan as lists of names; every name a non-empty str, each module in one stage only."""
    raw = plan.stages if isinstance(plan, TrainingPlan) else plan
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise ConfigError(f"stages must be a sequence of stages (or a TrainingPlan), got {raw!r}")
    stages: list[list[str]] = []
    seen: set[str] = set()
    for i, stage in enumerate(raw):
        names = stage.modules if isinstance(stage, Stage) else stage
        if isinstance(names, str | bytes) or not isinstance(names, Sequence) or not names:
            raise ConfigError(f"stage {i} must be a non-empty sequence of module names, got {names!r}")
        for name in names:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"stage {i} holds {name!r}; module names must be non-empty strings")
            if name in seen:
                raise ConfigError(f"module {name!r} appears in more than one place in the stages; each trains once")
            seen.add(name)
        stages.append(list(names))
    if not stages:
        raise ConfigError("stages is empty: there is nothing to run")
    return stages


def _auxiliary_of(plan: Plan, caches: Mapping[str, Callable[[], Any]] | None) -> list[tuple[str, int]]:
    """``(producer, after_stage)`` of every cache to write; ``caches`` must match the plan's auxiliary data sets."""
    if caches is None:
        return []
    if not isinstance(plan, TrainingPlan):
        raise ConfigError(
            "caches needs a TrainingPlan, whose auxiliary data sets say after which stage each is written; "
            f"got plain stages {plan!r}"
        )
    needed = [(a.producer, a.after_stage) for a in plan.auxiliary]
    missing = sorted({p for p, _ in needed} - set(caches))
    if missing:
        raise ConfigError(f"the plan caches the outputs of {missing}; give run_stages a cache function for each")
    extra = sorted(set(caches) - {p for p, _ in needed})
    if extra:
        raise ConfigError(
            f"caches has functions for {extra}, whose outputs the plan does not cache; "
            f"it caches {sorted(p for p, _ in needed)}"
        )
    return needed
