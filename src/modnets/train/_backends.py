"""Running the stages of a training plan: stages in order, the modules of a stage in parallel.

A training plan (``modnets.analysis.dependencies(...).plan``) lists stages of modules that can train at
the same time; a stage starts when the one before it has finished, because its modules read what the
earlier ones wrote (weights, auxiliary datasets). :func:`run_stages` runs one job per module:

- ``backend="sequential"`` (the default): a plain loop in this process; nothing is started.
- ``backend="ray"``: one Ray task per module, on the cluster at ``address`` or, without one, on a local
  Ray instance started here with a few CPUs and shut down afterwards. Ray is an optional dependency
  (``pip install modnets[ray]``).

Jobs talk to each other through files (the run folder), not through return values: a job's result is
returned to the caller, never passed to the next stage.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from ..errors import ConfigError, MissingDependencyError

__all__ = ["BACKENDS", "StageRun", "check_backend", "run_stages"]

#: the accepted values of ``backend``
BACKENDS = ("sequential", "ray")

Job = Callable[[str], Any]

# Ray's smallest object store is 75 MiB; results are small (paths, metrics, a few tensors), and a large
# default would reserve shared memory that the jobs themselves need.
_OBJECT_STORE_BYTES = 128 * 1024**2


@dataclass
class StageRun:
    """What :func:`run_stages` did.

    Attributes:
        backend: the backend that ran the jobs.
        stages: the module names of each stage, in order.
        results: module name -> what its job returned, in plan order.
        module_seconds: module name -> wall time of its job, measured where the job ran (start-up and
            transfer overheads excluded).
        stage_seconds: wall time of each stage seen by the caller (scheduling overheads included).
        startup_seconds: time spent starting or connecting to the backend (0 for ``"sequential"``).
    """

    backend: str
    stages: list[list[str]]
    results: dict[str, Any] = field(default_factory=dict)
    module_seconds: dict[str, float] = field(default_factory=dict)
    stage_seconds: list[float] = field(default_factory=list)
    startup_seconds: float = 0.0

    @property
    def sequential_seconds(self) -> float:
        """The training cost on one worker: the sum of every module's time."""
        return sum(self.module_seconds.values())

    @property
    def parallel_seconds(self) -> float:
        """The training cost with one worker per module: the sum over stages of the slowest module."""
        return sum(max(self.module_seconds[m] for m in stage) for stage in self.stages)

    @property
    def overhead_seconds(self) -> float:
        """Stage wall time beyond each stage's slowest module (scheduling, transfers; start-up excluded)."""
        return sum(self.stage_seconds) - self.parallel_seconds


def check_backend(backend: object) -> str:
    """``backend`` if it is one of :data:`BACKENDS`; raises :class:`ConfigError` listing them otherwise."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    return backend  # type: ignore[return-value]


def run_stages(
    plan: object,
    job: Job,
    *,
    backend: str = "sequential",
    address: str | None = None,
    num_cpus: int = 1,
    progress: bool = True,
) -> StageRun:
    """Run ``job(name)`` for every module of a training plan: stages in order, a stage's modules in parallel.

    Args:
        plan: an object with ``.stages`` whose items have ``.modules`` (a
            :class:`~modnets.analysis.TrainingPlan`), or the stages themselves: a sequence of stages, each
            a sequence of module names or an object with ``.modules``.
        job: trains one module, given its name, and returns something small (a path, metrics). With
            ``backend="ray"`` it runs in another process: it and its result must pickle (cloudpickle). A
            function of an importable module (or a :func:`functools.partial` of one) is sent by reference
            and imported by the workers; one defined in the script being run is sent by value.
        backend: ``"sequential"`` or ``"ray"``.
        address: the Ray cluster to connect to (``"auto"``, ``"ray://host:10001"``, ...); ``None`` starts a
            local Ray (unless this process has already initialised Ray, which is then used as it is).
        num_cpus: CPUs reserved by each Ray task; the job's torch thread count is set to it.
        progress: show a progress bar over the modules.

    Returns:
        the results and the wall times per module and per stage.

    Raises:
        ConfigError: an unknown backend, a bad ``num_cpus``, stages that are not lists of distinct names, or
            ``address`` with the sequential backend.
        MissingDependencyError: ``backend="ray"`` without Ray installed.
        Exception: the first failing job's own exception type, its message prefixed with the module's name.

    Example:
        >>> run = run_stages([["a", "b"], ["c"]], str.upper, progress=False)
        >>> run.results
        {'a': 'A', 'b': 'B', 'c': 'C'}
        >>> len(run.stage_seconds)
        2
    """
    check_backend(backend)
    stages = _stages_of(plan)
    if not isinstance(num_cpus, int) or isinstance(num_cpus, bool) or num_cpus < 1:
        raise ConfigError(f"num_cpus must be an int >= 1, got {num_cpus!r}")
    if address is not None and backend != "ray":
        raise ConfigError(f"address={address!r} is a Ray cluster address; it needs backend='ray', got {backend!r}")
    run = StageRun(backend=backend, stages=stages)
    total = sum(len(s) for s in stages)
    with tqdm(total=total, desc=f"modules ({backend})", disable=not progress, leave=False, dynamic_ncols=True) as bar:
        if backend == "sequential":
            _run_sequential(run, job, bar)
        else:
            _run_ray(run, job, bar, address=address, num_cpus=num_cpus, width=max(len(s) for s in stages))
    return run


# ------------------------------------------------------------------------------------------- the backends


def _run_sequential(run: StageRun, job: Job, bar: tqdm) -> None:
    for index, stage in enumerate(run.stages):
        start = time.perf_counter()
        for name in stage:
            bar.set_postfix_str(f"stage {index + 1}/{len(run.stages)}: {name}")
            module_start = time.perf_counter()
            try:
                run.results[name] = job(name)
            except Exception as e:
                raise _named_from(e, name) from e
            run.module_seconds[name] = time.perf_counter() - module_start
            bar.update()
        run.stage_seconds.append(time.perf_counter() - start)


def _run_ray(run: StageRun, job: Job, bar: tqdm, *, address: str | None, num_cpus: int, width: int) -> None:
    ray = _import_ray()
    start = time.perf_counter()
    started = False
    if not ray.is_initialized():
        # the jobs' output (progress bars, prints) stays in the workers' log files
        options: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR)
        if address is None:
            # a small local instance: enough CPUs for the widest stage, never more than the machine has
            cpus = max(num_cpus, min(os.cpu_count() or 1, num_cpus * width))
            options.update(num_cpus=cpus, object_store_memory=_OBJECT_STORE_BYTES, include_dashboard=False)
        else:
            options.update(address=address)
        ray.init(**options)
        started = True
    run.startup_seconds = time.perf_counter() - start
    try:
        task = ray.remote(num_cpus=num_cpus, max_retries=0)(_call)
        for index, stage in enumerate(run.stages):
            stage_start = time.perf_counter()
            bar.set_postfix_str(f"stage {index + 1}/{len(run.stages)}")
            pending = [task.remote(job, name, threads=num_cpus) for name in stage]
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
            for name in stage:  # plan order, not finishing order
                run.results[name] = outcomes[name].result
                run.module_seconds[name] = outcomes[name].seconds
            run.stage_seconds.append(time.perf_counter() - stage_start)
    finally:
        if started:
            ray.shutdown()


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


@dataclass
class _Outcome:
    """What one job left: its result and time, or its failure."""

    name: str
    result: Any
    seconds: float
    failure: _Failure | None = None


def _call(job: Job, name: str, *, threads: int) -> _Outcome:
    """Run one job in a Ray worker, timed; its exception is returned, not raised, to reach the caller intact."""
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        result = job(name)
    except Exception as e:
        failure = _Failure(type(e), e.args, dict(vars(e)), traceback.format_exc())
        try:
            pickle.loads(pickle.dumps(failure))
        except Exception:  # parts that cannot travel: keep the type's name and the message
            failure = _Failure(RuntimeError, (f"{type(e).__name__}: {e}",), {}, failure.traceback)
        return _Outcome(name, None, time.perf_counter() - start, failure)
    return _Outcome(name, result, time.perf_counter() - start)


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


def _stages_of(plan: object) -> list[list[str]]:
    """The stages of a plan as lists of names; every name a non-empty str, each module in one stage only."""
    raw = plan.stages if hasattr(plan, "stages") else plan
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise ConfigError(f"stages must be a sequence of stages (or a plan with .stages), got {raw!r}")
    stages: list[list[str]] = []
    seen: set[str] = set()
    for i, stage in enumerate(raw):
        names = stage.modules if hasattr(stage, "modules") else stage
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

