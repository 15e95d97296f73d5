"""Running training-plan stages: in order, modules of a stage in parallel, sequentially or on Ray."""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from modnets.errors import ConfigError, MissingDependencyError, NumericalError
from modnets.train import run_stages

PLAN = SimpleNamespace(stages=(SimpleNamespace(modules=("find", "relate")), SimpleNamespace(modules=("describe",))))


def _train_toy(root: str, name: str) -> dict[str, float]:
    """A module's job: stage-1 modules fit a small linear map and save it; ``describe`` needs both saved."""
    folder = Path(root)
    torch.manual_seed(sum(map(ord, name)))
    x = torch.randn(64, 3)
    inputs = [torch.load(folder / f"{m}.pt") for m in ("find", "relate")] if name == "describe" else []
    target = x @ torch.tensor([1.0, -2.0, 0.5]) + sum(float(w.sum()) for w in inputs)
    w = torch.zeros(3, requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.1)
    for _ in range(30):
        loss = ((x @ w + b - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(w.detach(), folder / f"{name}.pt")
    return {"loss": loss.item(), "bias": b.item(), "threads": torch.get_num_threads()}


def _fail_on(bad: str, name: str) -> str:
    if name == bad:  # built here: NumericalError's keyword-only constructor does not unpickle
        raise NumericalError("loss is NaN", step=7, module=name, quantity="loss")
    return name


def test_sequential_runs_stages_in_order_and_later_stages_see_earlier_outputs(tmp_path):
    run = run_stages(PLAN, functools.partial(_train_toy, str(tmp_path)), progress=False)

    assert run.backend == "sequential" and run.startup_seconds == 0.0
    assert run.stages == [["find", "relate"], ["describe"]]
    assert list(run.results) == ["find", "relate", "describe"]
    assert all((tmp_path / f"{m}.pt").is_file() for m in run.results)
    saved = float(torch.load(tmp_path / "find.pt").sum() + torch.load(tmp_path / "relate.pt").sum())
    assert run.results["describe"]["bias"] == pytest.approx(saved, abs=0.1)  # it read stage 1's weights
    assert all(r["loss"] < 0.1 for r in run.results.values())
    assert len(run.stage_seconds) == 2
    slowest = max(run.module_seconds["find"], run.module_seconds["relate"]) + run.module_seconds["describe"]
    assert run.parallel_seconds == pytest.approx(slowest)
    assert run.sequential_seconds == pytest.approx(sum(run.module_seconds.values()))
    assert run.parallel_seconds <= run.sequential_seconds <= sum(run.stage_seconds) + 1e-9


def test_stages_accept_plain_sequences_and_keep_the_order_of_each_stage():
    seen = []

    def job(name):
        seen.append(name)
        return name * 2

    run = run_stages([["b", "a"], ("c",)], job, progress=False)
    assert seen == ["b", "a", "c"] and run.results == {"b": "bb", "a": "aa", "c": "cc"}


def test_a_training_plan_from_the_dependency_analysis_runs_stage_by_stage():
    from modnets.analysis import dependencies
    from modnets.models import get_assembly

    plan = dependencies(get_assembly("nmn")).plan
    run = run_stages(plan, str.upper, progress=False)
    assert run.stages == [list(stage.modules) for stage in plan.stages]
    assert run.results == {m: m.upper() for stage in plan.stages for m in stage.modules}


def test_a_failing_job_raises_its_own_error_naming_the_module():
    with pytest.raises(NumericalError, match="module 'relate': loss is NaN") as info:
        run_stages(PLAN, functools.partial(_fail_on, "relate"), progress=False)
    assert info.value.step == 7 and info.value.quantity == "loss"
    assert isinstance(info.value.__cause__, NumericalError)  # the job's own exception and traceback

    seen = []

    def job(name):
        seen.append(name)
        if name == "a":
            raise KeyError("weights")
        return name

    with pytest.raises(KeyError, match="module 'a': weights"):
        run_stages([["a"], ["b"]], job, progress=False)
    assert seen == ["a"]  # a later stage never starts after a failure


@pytest.fixture(scope="module")
def ray():
    """A local Ray shared by the tests of this file (run_stages uses a Ray this process has started)."""
    ray = pytest.importorskip("ray")
    # Ray's workers cannot import this test file (pytest imports it its own way): send its functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             object_store_memory=128 * 1024**2)
    sys.stderr.write(f"\n[ray.init: {time.perf_counter() - start:.1f} s]\n")
    yield ray
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow  # about 15-20 s: Ray's start-up and its workers' first import of torch
def test_ray_gives_the_same_results_as_sequential_on_a_two_stage_plan(tmp_path, ray):
    (tmp_path / "seq").mkdir()
    (tmp_path / "ray").mkdir()
    start = time.perf_counter()
    sequential = run_stages(PLAN, functools.partial(_train_toy, str(tmp_path / "seq")), progress=False)
    parallel = run_stages(PLAN, functools.partial(_train_toy, str(tmp_path / "ray")), backend="ray", progress=False)
    sys.stderr.write(f"\n[two-stage plan on Ray: {time.perf_counter() - start:.1f} s, stages "
                     f"{[round(s, 3) for s in parallel.stage_seconds]} s]\n")
    assert parallel.backend == "ray" and ray.is_initialized()  # a Ray it did not start is left running
    assert parallel.results == sequential.results
    assert all(r["threads"] == 1 for r in parallel.results.values())
    for m in ("find", "relate", "describe"):
        assert torch.equal(torch.load(tmp_path / "ray" / f"{m}.pt"), torch.load(tmp_path / "seq" / f"{m}.pt"))
    assert len(parallel.stage_seconds) == 2 and set(parallel.module_seconds) == {"find", "relate", "describe"}


@pytest.mark.slow
def test_ray_job_errors_keep_their_type_and_name_the_module(ray):
    with pytest.raises(NumericalError, match="module 'relate': loss is NaN") as info:
        run_stages(PLAN, functools.partial(_fail_on, "relate"), backend="ray", progress=False)
    assert info.value.step == 7
    assert any("_fail_on" in note for note in info.value.__notes__)  # the worker's traceback


def test_unknown_backend_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"backend must be one of 'sequential', 'ray', got 'dask'"):
        run_stages([["a"]], str, backend="dask")


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], "nothing to run"),
        ("ab", "sequence of stages"),
        ([["a"], "b"], "stage 1 must be a non-empty sequence"),
        ([["a"], []], "stage 1 must be a non-empty sequence"),
        ([["a", 3]], "module names must be non-empty strings"),
        ([["a"], ["b", "a"]], "'a' appears in more than one place"),
    ],
)
def test_bad_stages_raise_config_error(stages, message):
    with pytest.raises(ConfigError, match=message):
        run_stages(stages, str, progress=False)


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match="num_cpus must be an int >= 1, got 0"):
        run_stages([["a"]], str, backend="ray", num_cpus=0)
    with pytest.raises(ConfigError, match="needs backend='ray'"):
        run_stages([["a"]], str, address="auto")


def test_missing_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'modnets\[ray\]'"):
        run_stages([["a"]], str, backend="ray", progress=False)
