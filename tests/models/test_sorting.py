"""The sorting agent preset: neural and hand-written parts, shapes, interfaces, controller consistency."""

import pytest
import torch

import modnets
from modnets.agents import Representation
from modnets.data import SortingEnvironment, SortingInterface, expert_trace, sample_lists, sorting_traces
from modnets.errors import ConfigError
from modnets.models import (
    PointerShift,
    SwapNet,
    sorting_agent,
    sorting_control,
    sorting_operators,
)
from modnets.types import OneHot, Pointer


def test_reference_agent_sorts_every_list_like_the_expert():
    lists = sample_lists(300, min_length=2, max_length=12, generator=torch.Generator().manual_seed(0))
    agent = sorting_agent(operators=sorting_operators(reference=True), control=sorting_control(reference=True))
    env = SortingEnvironment()
    env.reset(lists.values, lists.lengths)
    trace = agent.solve(SortingInterface(env))
    assert env.is_target().all() and trace.stopped.all()
    expert = expert_trace(lists.values, lists.lengths)
    assert torch.equal(trace.actions[:, : expert.actions.shape[1]], expert.actions)
    assert torch.equal(trace.steps, expert.steps)


def test_neural_parts_have_the_thesis_architecture_and_the_reference_signatures():
    neural, reference = sorting_operators(hidden=100), sorting_operators(reference=True)
    assert [op.name for op in neural] == ["mova", "movb", "retb", "swap"]
    for n, r in zip(neural, reference, strict=True):
        assert n.functional.signature == r.functional.signature
        assert (n.reads, n.writes, n.keep) == (r.reads, r.writes, r.keep)
    assert [(op.reads, op.writes) for op in neural[:3]] == [(("a",), "a"), (("b",), "b"), (("a",), "b")]
    shift, swap = neural[0].functional, neural[3].functional
    assert isinstance(shift, PointerShift) and shift.lstm.hidden_size == 100 and not shift.lstm.bidirectional
    assert isinstance(swap, SwapNet) and swap.lstm.hidden_size == 100 and swap.lstm.bidirectional
    assert swap.signature.output == OneHot(11) and shift.signature.output == Pointer()
    control = sorting_control(hidden=100)
    assert control.digestor.lstm.hidden_size == 100 and control.policy.lstm.hidden_size == 100
    assert control.n_actions == 5


def test_neural_outputs_satisfy_their_types():
    modnets.check_interfaces(True)
    rep = sorting_traces(6, 5, torch.Generator().manual_seed(1)).representations.map(lambda x: x[:, 3])
    for op in sorting_operators(hidden=16):
        out = op(rep)  # validates every interface
        assert set(out) == set(rep) and all(out[k].shape == rep[k].shape for k in rep)
    probs = sorting_operators(hidden=16)[3].functional(rep["digits"], rep["a"], rep["b"])
    torch.testing.assert_close(probs.sum(-1), torch.ones(6, rep["a"].shape[1]))


def test_swap_reference_puts_null_mass_on_the_null_class():
    digits = torch.zeros(1, 4, 10)
    digits[0, :3] = torch.eye(10)[[3, 9, 5]]
    a, b = torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[0, 0, 1.0, 0]])
    out = sorting_operators(reference=True)[3].functional(digits, a, b)
    assert out.argmax(-1).tolist() == [[5, 9, 3, 10]]


def test_controller_sequence_equals_its_steps():
    control = sorting_control(hidden=12)
    trace = sorting_traces(5, 5, torch.Generator().manual_seed(2))
    steps = trace.actions.shape[1]
    reps = trace.representations.map(lambda x: x[:, :steps])
    fast = control.sequence(reps, trace.previous)
    state = control.initial_state(5)
    slow = []
    for t in range(steps):
        d = control(reps.map(lambda x, t=t: x[:, t]), trace.previous[:, t], state)
        slow.append(d.logits)
        state = d.state
    torch.testing.assert_close(fast, torch.stack(slow, 1), atol=1e-5, rtol=1e-4)
    masked = control.sequence(reps, trace.previous, mask=trace.active)
    # digesting only the active steps changes nothing before each example's stop
    torch.testing.assert_close(masked[trace.active], fast[trace.active], atol=1e-5, rtol=1e-4)


def test_reference_control_reproduces_the_expert_from_the_representation():
    trace = sorting_traces(100, 9, torch.Generator().manual_seed(3))
    steps = trace.actions.shape[1]
    reps = trace.representations.map(lambda x: x[:, :steps])
    logits = sorting_control(reference=True).sequence(reps, trace.previous)
    assert torch.equal(logits.argmax(-1)[trace.active], trace.actions[trace.active])


def test_untrained_neural_agent_runs_to_its_bound_with_gradients():
    agent = sorting_agent(hidden=8)
    rep = Representation(digits=torch.eye(10)[[1, 2, 3]][None], a=torch.tensor([[1.0, 0, 0]]),
                         b=torch.tensor([[0, 1.0, 0]]))
    trace = agent(rep, max_steps=4)
    assert trace.actions.shape == (1, int(trace.steps.max()))
    assert agent.step_bound(rep) == 3 * 3 - 1 + 3
    loss = trace.final["digits"].sum() + trace.logits.sum()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.control.parameters())


def test_bad_sizes_are_rejected():
    with pytest.raises(ConfigError, match="hidden"):
        PointerShift(hidden=0)
    with pytest.raises(ConfigError, match="hidden"):
        sorting_control(hidden=-1)
