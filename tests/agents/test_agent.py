"""The perception-action loop: stopping, the bound, operator override, per-row dispatch, interface sync."""

import pytest
import torch
from torch import nn

from modnets.agents import Agent, ControlModule, Decision, ModuleOperator, Policy, Representation
from modnets.data import OPERATIONS, SortingEnvironment, SortingInterface, expert_trace
from modnets.errors import ConfigError, ShapeError
from modnets.models import sorting_agent, sorting_control, sorting_operators


class CountTo(Policy):
    """Increment until the counter reaches ``limit`` (then stop); ``limit=None`` never stops."""

    def __init__(self, limit):
        super().__init__(3)  # inc, dec, stop
        self.limit = limit

    def initial_state(self, batch_size, device=None):
        return torch.zeros(batch_size)

    def forward(self, embedding, previous, state):
        x = embedding[:, 0]
        stop = torch.zeros_like(x, dtype=torch.bool) if self.limit is None else x >= self.limit
        act = torch.where(stop, 2, 0)
        return Decision(nn.functional.one_hot(act, 3).float() * 10, state + 1)


def _counter_agent(limit, calls=None, max_steps=50):
    def inc(x):
        if calls is not None:
            calls.append(x.shape[0])
        return x + 1

    ops = [ModuleOperator("inc", functional=inc, reads=("x",), writes="x"),
           ModuleOperator("dec", functional=lambda x: x - 1, reads=("x",), writes="x")]
    control = ControlModule(digestor=lambda rep: rep["x"], policy=CountTo(limit))
    return Agent(control=control, operators=ops, stop="stop", max_steps=max_steps)


def test_loop_stops_on_the_stop_action_per_example():
    calls = []
    agent = _counter_agent(3, calls)
    trace = agent(Representation(x=torch.tensor([[0.0], [2.0], [5.0]])))
    torch.testing.assert_close(trace.final["x"], torch.tensor([[3.0], [3.0], [5.0]]))
    assert trace.stopped.all()
    assert trace.steps.tolist() == [4, 2, 1]  # increments, then the stop action
    assert trace.actions.tolist() == [[0, 0, 0, 2], [0, 2, -1, -1], [2, -1, -1, -1]]
    assert calls == [2, 1, 1]  # each step the operator ran once, on the rows that selected it
    assert trace.logits.shape == (3, 4, 3)


def test_loop_stops_on_the_bound():
    agent = _counter_agent(None, max_steps=7)
    trace = agent(Representation(x=torch.zeros(2, 1)))
    assert not trace.stopped.any() and trace.steps.tolist() == [7, 7]
    torch.testing.assert_close(trace.final["x"], torch.full((2, 1), 7.0))
    assert agent(Representation(x=torch.zeros(2, 1)), max_steps=2).steps.tolist() == [2, 2]


def test_teacher_overrides_the_selection_and_records_the_representations():
    agent = _counter_agent(3)
    teacher = torch.tensor([[1, 1, 0, 2], [0, 2, -1, -1]])
    trace = agent(Representation(x=torch.zeros(2, 1)), teacher=teacher, record=True)
    assert trace.actions.tolist() == teacher.tolist()
    torch.testing.assert_close(trace.final["x"], torch.tensor([[-1.0], [1.0]]))
    assert trace.representations["x"][:, :, 0].tolist() == [[0, -1, -2, -1, -1], [0, 1, 1, 1, 1]]
    before, after = trace.transitions(1)
    assert before["x"].flatten().tolist() == [0, -1] and after["x"].flatten().tolist() == [-1, -2]
    assert trace.previous.tolist() == [[-1, 1, 1, 0], [-1, 0, 2, -1]]
    with pytest.raises(ShapeError, match="teacher"):
        agent(Representation(x=torch.zeros(2, 1)), teacher=torch.zeros(3, 2, dtype=torch.long))


def test_agent_checks_its_parts():
    ops = sorting_operators(reference=True)
    with pytest.raises(ConfigError, match="policy has 5 actions, but 3 operators"):
        Agent(control=sorting_control(reference=True), operators=ops[:3], stop="eop")
    with pytest.raises(ConfigError, match="distinct"):
        Agent(control=sorting_control(reference=True), operators=[*ops[:3], ops[0]], stop="eop")
    with pytest.raises(ConfigError, match="reread"):
        _counter_agent(3)(Representation(x=torch.zeros(1, 1)), reread=True)


def test_interface_keeps_environment_and_representation_in_sync_both_ways():
    env = SortingEnvironment()
    env.reset(torch.tensor([[3, 1, 2, -1], [5, 4, 0, 9]]))
    interface = SortingInterface(env)
    # environment -> representation
    env.step(torch.tensor([OPERATIONS.index("movb"), OPERATIONS.index("swap")]))
    rep = interface.read()
    assert rep["b"].argmax(-1).tolist() == [2, 1]
    assert rep["digits"].argmax(-1)[1].tolist() == [4, 5, 0, 9]
    assert rep["digits"][0, 3].sum() == 0  # past the end of the first list
    # representation -> environment, soft values decoded
    soft_a = torch.tensor([[0.1, 0.8, 0.2, 0.0], [0.0, 0.3, 0.9, 0.1]])
    interface.write(rep.replace(a=soft_a))
    assert env.state.a.tolist() == [1, 2] and env.state.b.tolist() == [2, 1]
    # an inconsistent pointer (two values above 0.5) decodes as invalid
    interface.write(rep.replace(a=torch.tensor([[0.9, 0.8, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])))
    assert env.state.a.tolist() == [-1, 0]
    # round trip
    again = interface.read()
    interface.write(again)
    for k in again:
        torch.testing.assert_close(interface.read()[k], again[k])


def test_solve_writes_every_step_to_the_environment():
    values = torch.tensor([[4, 3, 2, 1, 0], [0, 1, 2, 3, 4]])
    agent = sorting_agent(operators=sorting_operators(reference=True), control=sorting_control(reference=True))
    for reread in (False, True):
        env = SortingEnvironment()
        env.reset(values)
        trace = agent.solve(SortingInterface(env), reread=reread)
        assert env.is_target().all() and trace.stopped.all()
        expert = expert_trace(values).actions
        assert trace.actions[:, : expert.shape[1]].tolist() == expert.tolist()


def test_swapping_an_implementation_needs_no_other_change():
    values = torch.tensor([[3, 9, 5, 4, 1], [2, 2, 1, 0, 7]])
    agent = sorting_agent(operators=sorting_operators(reference=True), control=sorting_control(reference=True))
    neural = sorting_operators(hidden=8)
    for k, op in enumerate(agent.operators):
        assert op.functional.signature == neural[k].functional.signature
    # an operator with a hand-written functional written differently (a matrix product) replaces mova
    shift = torch.diag(torch.ones(4), 1)
    agent.operators[0] = ModuleOperator("mova", functional=lambda p: p @ shift, reads=("a",), writes="a")
    env = SortingEnvironment()
    env.reset(values)
    agent.solve(SortingInterface(env))
    assert env.is_target().all()
    # a neural functional fits the same slot; the hybrid agent runs (untrained, so it need not sort)
    agent.operators[3].functional = neural[3].functional
    env.reset(values)
    trace = agent.solve(SortingInterface(env), max_steps=30)
    assert trace.final["digits"].shape == (2, 5, 10) and trace.steps.max() <= 30
