"""Executing a training plan: every module trained on its own, stage by stage, with the caches in between.

A :class:`~modnets.analysis.TrainingPlan` says which modules can train at the same time (a stage), which
auxiliary data sets to write once a stage is done, and which modules need a surrogate gradient module. What
training one module means is the caller's business: a *job* per module name. :func:`train_plan` runs the
jobs of each stage with :func:`~modnets.train.run_stages` (one after another, or in parallel on Ray), writes
the auxiliary data sets the plan lists after that stage with the caller's *cache* functions, and times all
of it, so that the cost of module-wise training can be reported as the thesis does: the sum of every
module's time (one worker) and, per stage, the slowest module (one worker per module).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..errors import ConfigError
from ._backends import check_backend, run_stages

__all__ = ["PlanRun", "train_plan"]


@dataclass
class PlanRun:
    """What :func:`train_plan` did.

    Attributes:
        backend: the backend that ran the jobs.
        stages: the module names of each stage, in order.
        results: module name -> what its job returned.
        module_seconds: module name -> wall time of its job where it ran (its searches included).
        cache_seconds: producer name -> time spent writing its auxiliary data set.
        cache_after: producer name -> the 1-based stage after which its cache was written.
        cache_results: producer name -> what its cache function returned (e.g. the manifest).
        wall_seconds: wall time of the whole plan seen by the caller (backend start-up included).
    """

    backend: str
    stages: list[list[str]]
    results: dict[str, Any] = field(default_factory=dict)
    module_seconds: dict[str, float] = field(default_factory=dict)
    cache_seconds: dict[str, float] = field(default_factory=dict)
    cache_after: dict[str, int] = field(default_factory=dict)
    cache_results: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def sequential_seconds(self) -> float:
        """Training cost on one worker: every module's time plus every cache's."""
        return sum(self.module_seconds.values()) + sum(self.cache_seconds.values())

    @property
    def parallel_seconds(self) -> float:
        """Training cost with one worker per module: per stage, the slowest module, then that stage's caches."""
        total = 0.0
        for i, stage in enumerate(self.stages, 1):
            total += max(self.module_seconds[m] for m in stage)
            total += sum(s for p, s in self.cache_seconds.items() if self.cache_after[p] == i)
        return total

    def to_dict(self) -> dict[str, Any]:
        """The timings as a JSON-ready dict (job results left out)."""
        return {
            "backend": self.backend, "stages": self.stages, "module_seconds": dict(self.module_seconds),
            "cache_seconds": dict(self.cache_seconds), "sequential_seconds": self.sequential_seconds,
            "parallel_seconds": self.parallel_seconds, "wall_seconds": self.wall_seconds,
        }


def _call_job(jobs: Mapping[str, Callable[[], Any]], name: str) -> Any:
    return jobs[name]()


def train_plan(
    plan: object,
    jobs: Mapping[str, Callable[[], Any]],
    *,
    caches: Mapping[str, Callable[[], Any]] | None = None,
    collect: Callable[[str, Any], None] | None = None,
    backend: str = "sequential",
    address: str | None = None,
    num_cpus: int = 1,
    progress: bool = True,
) -> PlanRun:
    """Train every module of a plan with its own job, stage by stage, and write the plan's caches between stages.

    Args:
        plan: a :class:`~modnets.analysis.TrainingPlan` (its ``stages`` and ``auxiliary``), or any object with
            ``stages`` (items with ``modules``) and ``auxiliary`` (items with ``producer`` and ``after_stage``).
        jobs: module name -> a callable without arguments that trains that module and returns something small
            (its weights, its scores). Jobs of one stage may run in other processes (``backend="ray"``): they
            must then pickle, and they must hand their results back by return value or through files, not by
            changing objects of the caller.
        caches: producer name -> a callable without arguments that writes the producer's auxiliary data set
            (e.g. with :func:`~modnets.train.cache_outputs`) once the producer's stage is done; it runs in this
            process, after ``collect`` has taken the stage's results (so it sees the trained weights).
        collect: ``collect(name, result)`` is called in this process for every job of a stage once the stage
            is done, before its caches are written: where results travel back from other processes, this is
            where the caller loads the returned weights into its modules.
        backend: ``"sequential"`` or ``"ray"`` (see :func:`~modnets.train.run_stages`).
        address: the Ray cluster (``backend="ray"`` only).
        num_cpus: CPUs per Ray task.
        progress: show progress bars.

    Returns:
        the jobs' results and the time of every module and cache.

    Raises:
        ConfigError: a module of the plan without a job, a job for a module the plan does not train, or an
            auxiliary data set of the plan without a cache function.

    Example:
        >>> from modnets.analysis import Assembly, Loss, ModuleSpec, dependencies
        >>> a = Assembly(sources=("x",), modules=(ModuleSpec("enc", ("x",)), ModuleSpec("head", ("enc",))),
        ...              losses=(Loss("y", on="head"),))
        >>> plan = dependencies(a).plan
        >>> done = []
        >>> run = train_plan(plan, {"enc": lambda: done.append("enc"), "head": lambda: done.append("head")},
        ...                  caches={"enc": lambda: done.append("cache enc")}, progress=False)
        >>> done, run.stages
        (['enc', 'cache enc', 'head'], [['enc'], ['head']])
    """
    check_backend(backend)
    caches = dict(caches or {})
    stages = [list(stage.modules) for stage in plan.stages]  # type: ignore[attr-defined]
    planned = {m for stage in stages for m in stage}
    missing = sorted(planned - set(jobs))
    extra = sorted(set(jobs) - planned)
    if missing or extra:
        raise ConfigError(
            f"train_plan needs exactly one job per module of the plan ({sorted(planned)}); "
            f"missing: {missing}, not in the plan: {extra}"
        )
    auxiliary = list(getattr(plan, "auxiliary", ()))
    uncached = sorted({a.producer for a in auxiliary} - set(caches))
    if uncached:
        raise ConfigError(f"the plan caches the outputs of {uncached}; give train_plan a cache function for each")

    run = PlanRun(backend=backend, stages=stages)
    start = time.perf_counter()
    job = partial(_call_job, dict(jobs))
    for index, stage in enumerate(stages, 1):
        done = run_stages([stage], job, backend=backend, address=address, num_cpus=num_cpus, progress=progress)
        run.results.update(done.results)
        run.module_seconds.update(done.module_seconds)
        if collect is not None:
            for name in stage:
                collect(name, done.results[name])
        for aux in auxiliary:
            if aux.after_stage == index:
                cache_start = time.perf_counter()
                run.cache_results[aux.producer] = caches[aux.producer]()
                run.cache_seconds[aux.producer] = time.perf_counter() - cache_start
                run.cache_after[aux.producer] = index
    run.wall_seconds = time.perf_counter() - start
    return run
