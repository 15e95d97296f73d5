"""Timing helpers shared by the benchmarks: medians after warm-up, side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

__all__ = ["median_times"]


def median_times(fns: Mapping[str, Callable[[], object]], *, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time in seconds of each function, measured interleaved (round-robin) in one process.

    Interleaving spreads machine noise evenly over the contenders, so their ratios are fair.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}
