"""Training agents: the thesis criteria on hand-made examples, both regimes, sequential and parallel modules."""

from functools import partial

import pytest
import torch

from modnets.data import augment_sorting, sorting_traces
from modnets.errors import ConfigError, ShapeError
from modnets.models import sorting_agent
from modnets.train import (
    AgentTrainingConfig,
    Checkpointer,
    Criterion,
    CriterionMonitor,
    ModuleJob,
    ModuleJobs,
    RunDir,
    category_errors,
    output_terms,
    pointer_errors,
    run_stages,
    saturation,
    train_agent_end_to_end,
    train_control,
    train_operator,
)
from modnets.types import OneHot, Pointer

# ----------------------------------------------------------------------------- metrics on hand-made examples


def test_saturation_counts_values_more_than_a_tenth_from_the_reference():
    ref = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    assert saturation(torch.tensor([[0.05, 0.95, 0.0, 0.09]]), ref) == 0
    assert saturation(torch.tensor([[0.2, 0.95, 0.0, 0.0]]), ref) == 0.25
    assert saturation(torch.tensor([[0.5, 0.5, 0.5, 0.5]]), ref) == 1
    assert saturation(torch.tensor([[0.0, 0.85, 0.0, 0.0]]), ref, threshold=0.2) == 0
    with pytest.raises(ShapeError):
        saturation(torch.zeros(1, 3), ref)


def test_pointer_errors_follow_the_thesis_validity_test():
    target = torch.tensor([[0.0, 1.0, 0.0]]).repeat(5, 1)
    x = torch.tensor([
        [0.1, 0.9, 0.4],  # right
        [0.6, 0.9, 0.0],  # two values above 0.5: inconsistent
        [0.9, 0.1, 0.0],  # one value above 0.5, wrong place
        [0.1, 0.4, 0.0],  # none above 0.5
        [0.0, 0.51, 0.49],  # right, barely
    ])
    assert pointer_errors(x, target).tolist() == [False, True, True, True, False]
    assert not pointer_errors(torch.tensor([[0.2, 0.3]]), torch.zeros(1, 2)).any()  # null pointer


def test_category_errors_and_output_terms_with_a_null_class():
    probs = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]],
                          [[0.3, 0.6, 0.1], [0.1, 0.1, 0.8]]])  # (B=2, L=2, C=3): 2 classes + null
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])  # second position is null
    assert category_errors(probs, torch.tensor([[0, 2], [0, 2]])).tolist() == [False, True]
    terms = output_terms(OneHot(3), probs, target)
    assert terms.error == 0.5
    expected = -(torch.tensor([0.7, 0.8, 0.3, 0.8]).log().mean())
    torch.testing.assert_close(terms.loss, expected)
    # against [1, 0, 0] and [0, 0, 1]: 0.3 and 0.2 off, then 0.2; 0.7 and 0.6, then 0.2 (0.1 is not > 0.1)
    assert terms.saturation == pytest.approx(6 / 12)
    ptr = output_terms(Pointer(), torch.tensor([[0.05, 0.95], [0.8, 0.3]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert ptr.error == 0.5 and ptr.saturation == pytest.approx(0.5)
    with pytest.raises(ShapeError):
        output_terms(OneHot(3), probs, torch.zeros(2, 2, 5))


def test_criterion_monitor_ends_on_error_and_saturation_tiny_or_stagnant_loss():
    m = CriterionMonitor(Criterion(window=3, patience=None))
    assert [m.add(loss=0.5, error=0.0, saturation=0.02) for _ in range(4)] == [None] * 4  # saturation too high
    m.reset()
    assert [m.add(loss=0.5, error=0.0, saturation=0.0) for _ in range(3)] == [None, None, "criterion"]
    no_sat = CriterionMonitor(Criterion(window=2, patience=None), saturation=False)
    no_sat.add(loss=0.5, error=0.01, saturation=0.5)
    assert no_sat.add(loss=0.5, error=0.0, saturation=0.5) == "criterion"
    tiny = CriterionMonitor(Criterion(window=2, patience=None))
    tiny.add(loss=1e-8, error=1.0)
    assert tiny.add(loss=1e-8, error=1.0) == "tiny loss"
    flat = CriterionMonitor(Criterion(window=2, patience=3))
    verdicts = [flat.add(loss=0.5, error=0.5) for _ in range(6)]
    assert verdicts[-1] == "stagnant" and verdicts[:4] == [None] * 4
    with pytest.raises(ConfigError, match="max_error"):
        Criterion(max_error=1.5)
    with pytest.raises(ConfigError, match="window"):
        Criterion(window=0)


# ----------------------------------------------------------------------------- the training regimes


def _config(**kw):
    base = dict(batch_size=16, max_size=3, log_every=5, criterion=Criterion(window=5, patience=None))
    return AgentTrainingConfig(**{**base, **kw})


def test_an_operator_learns_to_move_a_pointer_with_noise():
    agent = sorting_agent(hidden=24)
    op = agent.operators[0]
    result = train_operator(op, action=0, traces=sorting_traces, config=_config(max_steps=300, batch_size=32),
                            noise=partial(augment_sorting, level=0.4), run=RunDir(progress=False))
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    assert result.history[-1]["error"] < result.history[0]["error"]
    assert {"saturation", "grad_abs", "seconds", "size"} <= set(result.history[-1])
    assert result.steps <= 300 and result.seconds > 0


def test_operators_with_no_data_at_a_level_skip_it():
    agent = sorting_agent(hidden=8)
    result = train_operator(agent.operators[1], action=1, traces=sorting_traces, config=_config(max_steps=2),
                            run=RunDir(progress=False))
    assert result.levels[2] == "no data"  # lists of two digits never move B
    assert result.stop_reason == "step limit" and result.cut_short


def test_control_and_end_to_end_training_lower_their_losses():
    agent = sorting_agent(hidden=16)
    control = train_control(agent.control, traces=sorting_traces, config=_config(max_steps=60, max_size=2),
                            run=RunDir(progress=False))
    assert control.history[-1]["loss"] < control.history[0]["loss"]
    agent = sorting_agent(hidden=16)
    mono = train_agent_end_to_end(agent, traces=sorting_traces, config=_config(max_steps=40, max_size=2),
                                  run=RunDir(progress=False))
    assert mono.history[-1]["loss"] < mono.history[0]["loss"]
    assert "saturation" not in mono.history[-1]


def test_time_budget_stops_a_run():
    agent = sorting_agent(hidden=8)
    result = train_control(agent.control, traces=sorting_traces, config=_config(max_seconds=0.3, max_steps=None),
                           run=RunDir(progress=False))
    assert result.stop_reason == "time budget" and result.seconds >= 0.3 and result.cut_short


def test_modules_train_in_parallel_processes_and_come_back():
    agent = sorting_agent(hidden=8)
    config = _config(max_steps=3)
    jobs = [ModuleJob(op.name, op, partial(train_operator, action=k, traces=sorting_traces, config=config,
                                           run=RunDir(progress=False))) for k, op in enumerate(agent.operators[:2])]
    before = {j.name: [p.detach().clone() for p in j.module.parameters()] for j in jobs}
    modular = ModuleJobs(jobs)
    out = run_stages([modular.names], modular, collect=modular.collect, backend="processes", workers=2,
                     progress=False)
    assert out.workers == 2 and set(out.results) == {"mova", "movb"}
    assert out.timings.wall_seconds > 0 and out.timings.sequential_seconds > 0
    for j in jobs:
        after = list(j.module.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(after, before[j.name], strict=True))
        for k, v in j.module.state_dict().items():
            torch.testing.assert_close(v, out.results[j.name].state_dict[k])
        assert out.results[j.name].steps == 3
    with pytest.raises(ConfigError, match="distinct"):
        ModuleJobs([jobs[0], jobs[0]])
    with pytest.raises(ConfigError, match="distinct"):
        ModuleJobs([])


def test_training_config_is_validated():
    with pytest.raises(ConfigError, match="min_size"):
        AgentTrainingConfig(min_size=5, max_size=3)
    with pytest.raises(ConfigError, match="lr"):
        AgentTrainingConfig(lr=0)
    with pytest.raises(ConfigError, match="max_seconds"):
        AgentTrainingConfig(max_seconds=-1)
    assert AgentTrainingConfig(criterion={"window": 3}).criterion.window == 3


# ----------------------------------------------------------------------------- checkpoints, resume and guards


class _Crash(Exception):
    pass


def _crashing(traces, at: int):
    """A trace source that fails on its ``at``-th call, like a process killed mid-run."""
    calls = {"n": 0}

    def source(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise _Crash
        return traces(*args, **kwargs)

    return source


def test_an_interrupted_agent_training_resumes_to_the_same_weights(tmp_path):
    config = _config(max_steps=25, batch_size=8, min_size=2, max_size=4, checkpoint_every=4)

    def train(traces, **kwargs):
        torch.manual_seed(0)
        agent = sorting_agent(hidden=8)
        result = train_operator(agent.operators[3], action=3, traces=traces, config=config,
                                noise=partial(augment_sorting, level=0.4), **kwargs)
        return agent.operators[3], result

    reference, ref_result = train(sorting_traces, run=RunDir(progress=False))
    with pytest.raises(_Crash):
        train(_crashing(sorting_traces, 15), run=RunDir(tmp_path, progress=False))
    resumed, result = train(sorting_traces, run=RunDir(tmp_path, resume=True, progress=False))
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert result.steps == ref_result.steps == 25 and result.levels == ref_result.levels
    assert [h["loss"] for h in result.history] == [h["loss"] for h in ref_result.history]
    # a finished run resumes to its result without training again
    again, finished = train(sorting_traces, run=RunDir(tmp_path, resume=True, progress=False))
    assert finished.steps == 25 and all(torch.equal(a, b) for a, b in
                                         zip(resumed.state_dict().values(), again.state_dict().values(), strict=True))
    assert finished.history == result.history
    # the history is stored once per checkpoint, in the loop's state
    saved = Checkpointer(tmp_path / "checkpoints" / result.name).load_latest()
    assert saved["result"]["history"] == [] and len(saved["loop"]["history"]) == len(result.history)


def test_a_nan_in_an_agent_loss_names_the_step_and_the_module():
    from modnets.errors import NumericalError

    agent = sorting_agent(hidden=8)
    with torch.no_grad():
        agent.control.digestor.lstm.weight_ih_l0.fill_(float("nan"))
    with pytest.raises(NumericalError, match="step 1: loss term 'loss' of control is NaN") as err:
        train_control(agent.control, traces=sorting_traces, config=_config(max_steps=3), run=RunDir(progress=False))
    assert err.value.step == 1 and err.value.module == "control"
