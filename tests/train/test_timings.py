"""The cost of a staged run: on one worker (everything summed), one worker per module (slowest per stage)."""

import pytest

from modnets.train import StageTimings


def test_costs_are_the_sum_and_the_slowest_module_per_stage_with_its_caches():
    t = StageTimings(stages=[["a", "e"], ["b", "c"]], module_seconds={"a": 3.0, "e": 1.0, "b": 2.0, "c": 5.0},
                     stage_seconds=[3.5, 5.25], cache_seconds={"a": 0.5}, cache_after={"a": 1}, wall_seconds=9.5)
    assert t.sequential_seconds == pytest.approx(3 + 1 + 2 + 5 + 0.5)
    assert t.parallel_seconds == pytest.approx(3 + 0.5 + 5)
    assert t.overhead_seconds == pytest.approx(0.5 + 0.25)
    d = t.to_dict()
    assert d["parallel_seconds"] == pytest.approx(8.5) and d["sequential_seconds"] == pytest.approx(11.5)
    assert d["wall_seconds"] == 9.5 and d["module_seconds"] == t.module_seconds


def test_a_run_without_caches_costs_its_modules_only():
    t = StageTimings(stages=[["a"], ["b"]], module_seconds={"a": 1.0, "b": 2.0})
    assert t.sequential_seconds == t.parallel_seconds == pytest.approx(3.0)
