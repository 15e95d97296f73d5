"""Where the time of a staged run went: every module's job, every cache, every stage and the whole run.

The thesis reports the cost of module-wise training twice: on one worker (every module one after another)
and with one worker per module (the stages still run in order, so each stage lasts as long as its slowest
module). :class:`StageTimings` gives both from the measured times of the jobs, and keeps the measured wall
time of the run next to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["StageTimings"]


@dataclass
class StageTimings:
    """The measured times of a run of :func:`~modnets.train.run_stages`.

    Attributes:
        stages: the module names of each stage, in order.
        module_seconds: module name -> wall time of its job, measured where the job ran (this process, a
            worker process or a Ray worker; start-up and transfers excluded).
        stage_seconds: wall time of each stage's jobs seen by the caller (scheduling and transfers included,
            starting the backend excluded).
        cache_seconds: producer name -> time spent writing its auxiliary data set, in the caller.
        cache_after: producer name -> the 1-based stage after which its cache was written.
        startup_seconds: time spent starting the backend: connecting to or starting Ray, forking worker
            processes (0 for ``"sequential"``).
        wall_seconds: wall time of the whole run seen by the caller, everything included.

    Example:
        >>> t = StageTimings([["a", "b"], ["c"]], module_seconds={"a": 3.0, "b": 1.0, "c": 2.0},
        ...                  cache_seconds={"a": 0.5}, cache_after={"a": 1})
        >>> t.sequential_seconds, t.parallel_seconds
        (6.5, 5.5)
    """

    stages: list[list[str]]
    module_seconds: dict[str, float] = field(default_factory=dict)
    stage_seconds: list[float] = field(default_factory=list)
    cache_seconds: dict[str, float] = field(default_factory=dict)
    cache_after: dict[str, int] = field(default_factory=dict)
    startup_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def sequential_seconds(self) -> float:
        """The cost on one worker: every module's time plus every cache's."""
        return sum(self.module_seconds.values()) + sum(self.cache_seconds.values())

    @property
    def parallel_seconds(self) -> float:
        """The cost with one worker per module: per stage, the slowest module, then that stage's caches."""
        return sum(self._slowest(stage) + self._caches_after(i) for i, stage in enumerate(self.stages, 1))

    @property
    def overhead_seconds(self) -> float:
        """Stage wall time beyond each stage's slowest module (scheduling, transfers; start-up excluded)."""
        return sum(self.stage_seconds) - sum(self._slowest(stage) for stage in self.stages)

    def _slowest(self, stage: list[str]) -> float:
        return max((self.module_seconds[m] for m in stage if m in self.module_seconds), default=0.0)

    def _caches_after(self, index: int) -> float:
        return sum(s for p, s in self.cache_seconds.items() if self.cache_after.get(p) == index)

    def to_dict(self) -> dict[str, Any]:
        """The times and both costs as a JSON-ready dict."""
        return {
            "stages": [list(s) for s in self.stages], "module_seconds": dict(self.module_seconds),
            "stage_seconds": list(self.stage_seconds), "cache_seconds": dict(self.cache_seconds),
            "startup_seconds": self.startup_seconds, "sequential_seconds": self.sequential_seconds,
            "parallel_seconds": self.parallel_seconds, "wall_seconds": self.wall_seconds,
        }
