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
}


def get_benchmark(name: str) -> ModuleType:
    """The benchmark module (with ``run(quick)``) of a name.

    Raises:
        UnknownNameError: unknown name; the message lists the known ones.
    """
    if name not in BENCHMARKS:
        raise UnknownNameError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(BENCHMARKS)}")
    return importlib.import_module(BENCHMARKS[name][0])
