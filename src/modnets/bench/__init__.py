"""Performance benchmarks: each ``run(quick=False) -> dict`` returns one JSON-ready result.

The result has the keys ``bench``, ``config``, ``results``, ``ratio`` and ``ratio_is``; timings are medians
over repeated runs after a warm-up, comparisons measured side by side in one process.

Public names:

- ``BENCHMARKS``: benchmark name -> (module path, one-line description).
- ``get_benchmark``: the benchmark module (with ``run(quick)``) of a name.
"""

from ._registry import BENCHMARKS as BENCHMARKS
from ._registry import get_benchmark as get_benchmark
