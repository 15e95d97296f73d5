"""Timing helpers shared by the benchmarks: medians after warm-up, side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch

__all__ = ["median_times"]


def median_times(fns: Mapping[str, Callable[[], object]], *, repeats: int, warmup: int = 1,
                 device: torch.device | str = "cpu") -> dict[str, float]:
    """Median wall time in seconds of each function, measured interleaved (round-robin) in one process.

    Interleaving spreads machine noise evenly over the contenders, so their ratios are fair. On a CUDA
    ``device`` the clock waits for the queued kernels before and after each call.
    """
    cuda = torch.device(device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}
