"""Running training-plan stages: in order, modules of a stage in parallel; sequentially, in processes or on Ray."""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from modnets.errors import ConfigError, MissingDependencyError, NumericalError
from modnets.plan import Assembly, AuxiliaryNeed, Loss, ModuleSpec, Stage, TrainingPlan
from modnets.train import StageTimings, run_stages

PLAN = TrainingPlan(
    stages=(Stage(("find", "relate"), (("find",), ("relate",))), Stage(("describe",), (("describe",),))),
    auxiliary=(), surrogates=(), frozen=(), unsupervised=(),
)

BACKENDS = ["sequential", "processes", pytest.param("ray", marks=pytest.mark.slow)]  # Ray: 15-20 s to start


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


def _fail_on(bad: str, root: str, name: str) -> str:
    if name == bad:  # built here: NumericalError's keyword-only constructor does not unpickle
        raise NumericalError("loss is NaN", step=7, module=name, quantity="loss")
    (Path(root) / name).touch()
    return name


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


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_runs_the_stages_in_order_and_times_them(backend, request, tmp_path):
    if backend == "ray":
        request.getfixturevalue("ray")
    run = run_stages(PLAN, functools.partial(_train_toy, str(tmp_path)), backend=backend, progress=False)

    assert run.backend == backend and run.stages == [["find", "relate"], ["describe"]]
    assert list(run.results) == ["find", "relate", "describe"]
    assert all((tmp_path / f"{m}.pt").is_file() for m in run.results)
    saved = float(torch.load(tmp_path / "find.pt").sum() + torch.load(tmp_path / "relate.pt").sum())
    assert run.results["describe"]["bias"] == pytest.approx(saved, abs=0.1)  # it read stage 1's weights
    assert all(r["loss"] < 0.1 for r in run.results.values())

    t = run.timings
    assert isinstance(t, StageTimings) and set(t.module_seconds) == {"find", "relate", "describe"}
    assert len(t.stage_seconds) == 2 and t.cache_seconds == {}
    assert t.parallel_seconds == pytest.approx(max(t.module_seconds["find"], t.module_seconds["relate"])
                                               + t.module_seconds["describe"])
    assert t.sequential_seconds == pytest.approx(sum(t.module_seconds.values()))
    assert t.parallel_seconds <= t.sequential_seconds
    assert t.wall_seconds >= sum(t.stage_seconds) + t.startup_seconds - 1e-9
    if backend == "sequential":
        assert t.startup_seconds == 0.0 and run.workers == 1 and run.start_method is None
        assert t.sequential_seconds <= sum(t.stage_seconds) + 1e-9
    else:
        assert all(r["threads"] == 1 for r in run.results.values())  # num_cpus=1: one thread per worker
    if backend == "processes":
        assert run.workers == 2 and run.start_method in ("fork", "spawn") and t.startup_seconds > 0


def test_processes_give_the_same_results_as_sequential(tmp_path):
    (tmp_path / "seq").mkdir()
    (tmp_path / "proc").mkdir()
    sequential = run_stages(PLAN, functools.partial(_train_toy, str(tmp_path / "seq")), progress=False)
    parallel = run_stages(PLAN, functools.partial(_train_toy, str(tmp_path / "proc")), backend="processes",
                          workers=1, progress=False)
    assert parallel.workers == 1
    assert {m: r["loss"] for m, r in parallel.results.items()} == {m: r["loss"] for m, r in sequential.results.items()}
    for m in ("find", "relate", "describe"):
        assert torch.equal(torch.load(tmp_path / "proc" / f"{m}.pt"), torch.load(tmp_path / "seq" / f"{m}.pt"))


def test_a_later_stage_of_processes_sees_what_was_collected_from_the_earlier_ones():
    collected: dict[str, int] = {}

    def job(name: str) -> int:  # a closure: the workers inherit it, it is not pickled
        return 10 if name == "a" else collected["a"] + 1

    run = run_stages([["a"], ["b"]], job, backend="processes", collect=collected.__setitem__, progress=False)
    assert run.results == {"a": 10, "b": 11} and collected == {"a": 10, "b": 11}


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


def _chain_plan() -> TrainingPlan:
    from modnets.analysis import dependencies

    a = Assembly(sources=("x",),
                 modules=(ModuleSpec("a", ("x",)), ModuleSpec("b", ("a",)), ModuleSpec("c", ("a",))),
                 losses=(Loss("y", on="b"), Loss("y", on="c")))
    return dependencies(a).plan


def test_collect_then_the_caches_run_between_stages_and_are_timed():
    events = []
    plan = _chain_plan()
    assert plan.auxiliary == (AuxiliaryNeed("a", ("b", "c"), ("y",), after_stage=1),)
    run = run_stages(plan, lambda m: events.append(m) or m.upper(),
                     caches={"a": lambda: events.append("cache a") or "manifest"},
                     collect=lambda name, result: events.append(f"collect {name}={result}"), progress=False)
    assert events == ["a", "collect a=A", "cache a", "b", "c", "collect b=B", "collect c=C"]
    assert run.stages == [["a"], ["b", "c"]] and run.results == {"a": "A", "b": "B", "c": "C"}
    assert run.cache_results == {"a": "manifest"} and run.timings.cache_after == {"a": 1}
    t = run.timings
    assert set(t.cache_seconds) == {"a"}
    assert t.sequential_seconds == pytest.approx(sum(t.module_seconds.values()) + t.cache_seconds["a"])
    assert t.wall_seconds >= t.parallel_seconds
    assert run.to_dict()["parallel_seconds"] == pytest.approx(t.parallel_seconds)


def test_caches_must_match_the_plan():
    plan = _chain_plan()
    with pytest.raises(ConfigError, match=r"caches the outputs of \['a'\]; give run_stages a cache function"):
        run_stages(plan, str, caches={}, progress=False)
    with pytest.raises(ConfigError, match=r"caches has functions for \['z'\], whose outputs the plan does not"):
        run_stages(plan, str, caches={"a": dict, "z": dict}, progress=False)
    with pytest.raises(ConfigError, match="caches needs a TrainingPlan"):
        run_stages([["a"]], str, caches={"a": dict}, progress=False)
    assert run_stages(plan, str, progress=False).cache_results == {}  # no caches: the caller's business


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_job_raises_its_own_error_naming_the_module(backend, request, tmp_path):
    if backend == "ray":
        request.getfixturevalue("ray")
    with pytest.raises(NumericalError, match="module 'relate': loss is NaN") as info:
        run_stages(PLAN, functools.partial(_fail_on, "relate", str(tmp_path)), backend=backend, progress=False)
    assert info.value.step == 7 and info.value.quantity == "loss" and info.value.module == "relate"
    assert not (tmp_path / "describe").exists()  # a later stage never starts after a failure
    if backend == "sequential":
        assert isinstance(info.value.__cause__, NumericalError)  # the job's own exception and traceback
    else:
        assert any("_fail_on" in note for note in info.value.__notes__)  # the worker's traceback


def test_an_exception_that_cannot_travel_keeps_its_type_name_and_message():
    class Local(Exception):  # a class of a function: it does not pickle
        pass

    def job(name):
        raise Local("no luck")

    with pytest.raises(RuntimeError, match="module 'a': Local: no luck"):
        run_stages([["a"]], job, backend="processes", progress=False)


def test_a_sequential_failure_stops_before_the_next_job():
    seen = []

    def job(name):
        seen.append(name)
        if name == "a":
            raise KeyError("weights")
        return name

    with pytest.raises(KeyError, match="module 'a': weights"):
        run_stages([["a"], ["b"]], job, progress=False)
    assert seen == ["a"]


def test_unknown_backend_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"backend must be one of 'sequential', 'processes', 'ray', got 'dask'"):
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
    with pytest.raises(ConfigError, match="workers must be an int >= 1 or None, got 0"):
        run_stages([["a"]], str, backend="processes", workers=0)
    with pytest.raises(ConfigError, match="needs backend='ray'"):
        run_stages([["a"]], str, address="auto")
    with pytest.raises(ConfigError, match="needs backend='processes'"):
        run_stages([["a"]], str, backend="ray", workers=2)


def test_missing_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'modnets\[ray\]'"):
        run_stages([["a"]], str, backend="ray", progress=False)


def test_workers_forked_after_the_parent_trained_return_tensors(tmp_path):
    """A worker forked from a parent that has trained returns its tensors (they once hung in transit, in torch's
    shared-memory hand-over)."""
    script = tmp_path / "fork_after_training.py"
    script.write_text(
        "import torch\n"
        "from modnets.train import run_stages\n"
        "lstm = torch.nn.LSTM(11, 100, batch_first=True)\n"
        "opt = torch.optim.Adam(lstm.parameters())\n"
        "for _ in range(50):\n"
        "    opt.zero_grad(); lstm(torch.randn(64, 8, 11))[0].pow(2).mean().backward(); opt.step()\n"
        "out = run_stages([['a', 'b']], lambda name: {'w': torch.full((400, 400), float(ord(name)))},\n"
        "                 backend='processes', workers=2, progress=False)\n"
        "print(sorted((k, float(v['w'][0, 0])) for k, v in out.results.items()))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[('a', 97.0), ('b', 98.0)]"
