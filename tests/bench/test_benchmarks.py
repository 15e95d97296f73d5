import json

import pytest

from modnets.bench import BENCHMARKS, get_benchmark
from modnets.errors import UnknownNameError


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_runs_quick_and_reports_the_contract(name):
    result = get_benchmark(name).run(quick=True)
    assert set(result) == {"bench", "config", "results", "ratio", "ratio_is"}
    assert result["bench"] == name
    assert result["ratio"] > 0 and isinstance(result["ratio_is"], str)
    json.dumps(result)  # JSON-ready


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known benchmarks: layouts, dispatch, scaling"):
        get_benchmark("nope")
