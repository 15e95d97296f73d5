"""The benchmarks modnets knows, imported on demand."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UnknownNameError

__all__ = ["BENCHMARKS", "get_benchmark"]

#: name -> (module path, one-line description)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "layouts": (
        "modnets.bench._layouts",
        "batched execution of 256 heterogeneous NMN layouts vs running each example on its own",
    ),
    "dispatch": (
        "modnets.bench._dispatch",
        "ModularLayer forward+backward (top-1, E=8 and 32) vs a dense MLP of equal FLOPs and the mask loop",
    ),
    "scaling": (
        "modnets.bench._scaling",
        "ModularLayer cost per example as the number of modules grows (E = 8, 32, 128)",
    ),
    "em": (
        "modnets.bench._em",
        "one batched EM E-step over S sampled routings vs S separate forward passes",
    ),
    "programs": (
        "modnets.bench._programs",
        "8 policy-sampled programs per question for 256 questions: batched execution vs one program at a time",
    ),
    "imn": (
        "modnets.bench._imn",
        "IMN winner-take-all step over 155 combinations: exact / fast scorer + winner recompute vs naive min loop",
    ),
}


def get_benchmark(name: str) -> ModuleType:
    """The benchmark module (with ``run(quick)``) of a name.

    Raises:
        UnknownNameError: unknown name; the message lists the known ones.
    """
    if name not in BENCHMARKS:
        raise UnknownNameError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(BENCHMARKS)}")
    return importlib.import_module(BENCHMARKS[name][0])
