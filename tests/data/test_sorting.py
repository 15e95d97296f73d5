"""List sorting: environment dynamics, selection-sort traces, interface, reference operators, noise."""

import itertools

import pytest
import torch

from modnets.data import (
    OPERATIONS,
    SortingEnvironment,
    SortingInterface,
    augment_sorting,
    expert_trace,
    max_trace_length,
    sample_lists,
    selection_sort_policy,
    selection_sort_trace,
    sorting_traces,
)
from modnets.errors import ConfigError, ShapeError
from modnets.models import sorting_operators


def _all_lists(length):
    return torch.tensor(list(itertools.product(range(10), repeat=length)))


@pytest.mark.parametrize("length", [2, 3, 4])
def test_selection_sort_traces_solve_every_list(length):
    values = _all_lists(length)
    trace = expert_trace(values)
    env = SortingEnvironment()
    env.reset(values)
    for t in range(trace.actions.shape[1]):
        env.step(trace.actions[:, t])
    assert env.is_target().all() and env.done.all() and trace.stopped.all()
    # the final recorded representation is the target: sorted digits, both pointers on the last digit
    assert torch.equal(trace.final["digits"].argmax(-1), values.sort(1).values)
    assert (trace.final["a"].argmax(-1) == length - 1).all() and (trace.final["b"].argmax(-1) == length - 1).all()
    assert int(trace.steps.max()) == max_trace_length(length)


def test_traces_solve_random_longer_lists_and_match_the_per_list_trace():
    lists = sample_lists(300, min_length=5, max_length=20, generator=torch.Generator().manual_seed(0))
    trace = expert_trace(lists.values, lists.lengths)
    env = SortingEnvironment()
    env.reset(lists.values, lists.lengths)
    for t in range(trace.actions.shape[1]):
        env.step(trace.actions[:, t])
    assert env.is_target().all()
    for i in range(20):
        n = int(lists.lengths[i])
        ops = [OPERATIONS[a] for a in trace.actions[i, : trace.steps[i]].tolist()]
        assert ops == selection_sort_trace(lists.values[i, :n].tolist())
    assert (trace.steps <= lists.lengths**2 - 1).all()


def test_decreasing_lists_take_the_longest_trace():
    for n in (2, 5, 9):
        assert len(selection_sort_trace(list(range(n, 0, -1)))) == max_trace_length(n) == n * n - 1
    assert selection_sort_trace([1, 2]) == ["mova", "eop"]


def test_the_vectorised_policy_reproduces_the_traces_step_by_step():
    lists = sample_lists(200, min_length=2, max_length=8, generator=torch.Generator().manual_seed(1))
    trace = expert_trace(lists.values, lists.lengths)
    env = SortingEnvironment()
    env.reset(lists.values, lists.lengths)
    interface = SortingInterface(env)
    previous = torch.full((200,), -1)
    for t in range(trace.actions.shape[1]):
        rep = interface.read()
        for k in rep:
            torch.testing.assert_close(rep[k], trace.representations[k][:, t])
        act = torch.where(env.done, -1, selection_sort_policy(env.state, previous))
        assert torch.equal(act, trace.actions[:, t])
        env.step(act)
        previous = act


def _reachable_states(n=400, seed=2):
    """R(t) at every step of random traces: the states the operators meet."""
    trace = sorting_traces(n, 8, torch.Generator().manual_seed(seed))
    b, t = trace.active.nonzero(as_tuple=True)
    lengths = (trace.representations["digits"][:, 0].sum(-1) > 0.5).sum(1)
    return trace.representations.map(lambda x: x[b, t]), lengths[b]


@pytest.mark.parametrize("k", range(4), ids=OPERATIONS[:4])
def test_reference_operators_pass_the_environments_checks(k):
    rep, lengths = _reachable_states()
    env = SortingEnvironment()
    env.reset(torch.zeros(rep.batch_size, rep["a"].shape[1], dtype=torch.long), lengths)
    interface = SortingInterface(env)
    interface.write(rep)  # the environment now holds the states
    expected = env.step(torch.full((rep.batch_size,), k))
    op = sorting_operators(reference=True)[k]
    interface.write(op(rep))
    got = env.state
    valid = expected.a >= 0
    assert valid.float().mean() > 0.5
    for field in ("values", "a", "b"):
        assert torch.equal(getattr(got, field), getattr(expected, field)), (OPERATIONS[k], field)


def test_environment_dynamics_at_the_edges():
    env = SortingEnvironment()
    env.reset(torch.tensor([[1, 0, -1], [2, 1, 0]]))
    mova, movb, retb, swap, eop = range(5)
    env.step(torch.tensor([movb, movb]))
    assert env.state.b.tolist() == [-1, 2]  # past the end of a 2-digit list
    env.step(torch.tensor([swap, retb]))
    assert env.state.values.tolist() == [[1, 0, -1], [2, 1, 0]]  # swap with an invalid pointer does nothing
    assert env.state.b.tolist() == [-1, 1]
    env.step(torch.tensor([eop, swap]))
    env.step(torch.tensor([mova, eop]))
    assert env.done.all() and env.state.a.tolist() == [0, 0]  # actions after eop are ignored
    assert env.state.values[1].tolist() == [1, 2, 0] and not env.is_target().any()


def test_environment_rejects_bad_input():
    env = SortingEnvironment()
    with pytest.raises(ConfigError, match="reset"):
        _ = env.state
    with pytest.raises(ConfigError, match="digits 0-9"):
        env.reset(torch.tensor([[1, 12, 3]]))
    with pytest.raises(ConfigError, match="lengths"):
        env.reset(torch.tensor([[1, -1, -1]]))
    with pytest.raises(ShapeError):
        env.reset(torch.tensor([1, 2, 3]))
    env.reset(torch.tensor([[1, 2, 3]]))
    with pytest.raises(ShapeError, match="actions"):
        env.step(torch.tensor([0, 1]))
    with pytest.raises(ShapeError, match="digits"):
        SortingInterface(env).write(SortingInterface(env).read().replace(digits=torch.zeros(1, 3, 9)))
    with pytest.raises(ConfigError):
        sample_lists(4, min_length=1)
    with pytest.raises(ConfigError):
        selection_sort_trace([3])


def test_noise_follows_eq_3_1_and_3_2():
    trace = sorting_traces(64, 6, torch.Generator().manual_seed(4))
    clean = trace.representations.map(lambda x: x[:, 0])
    noisy = augment_sorting(clean, 0.4, torch.Generator().manual_seed(5))
    for p in ("a", "b"):
        ones = clean[p] == 1
        assert ((noisy[p] >= 0.6) & (noisy[p] <= 1))[ones].all()
        assert ((noisy[p] >= 0) & (noisy[p] <= 0.4))[~ones].all()
    digit = clean["digits"].sum(-1) > 0.5
    torch.testing.assert_close(noisy["digits"].sum(-1)[digit], torch.ones(int(digit.sum())))  # eq. 3.2: simplex
    assert torch.equal(noisy["digits"].argmax(-1)[digit], clean["digits"].argmax(-1)[digit])
    assert (noisy["digits"][~digit].sum(-1) < 1e-3).all()  # null: the 11th class, dropped again
    assert not torch.equal(noisy["digits"], clean["digits"])
    assert not torch.equal(noisy["a"], clean["a"])
    # the noise decodes to the same state
    env = SortingEnvironment()
    env.reset(torch.zeros(64, 6, dtype=torch.long), (clean["digits"].sum(-1) > 0.5).sum(1))
    SortingInterface(env).write(noisy)
    decoded = SortingInterface(env).read()
    for k in clean:
        torch.testing.assert_close(decoded[k], clean[k])
