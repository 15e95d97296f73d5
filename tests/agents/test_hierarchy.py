"""Agents as operators of higher-level agents, and recursion bounded by depth."""

import pytest
import torch
from torch import nn

from modnets.agents import Agent, AgentOperator, ControlModule, Decision, Policy
from modnets.data import SortingEnvironment, SortingInterface, sample_lists
from modnets.errors import ConfigError
from modnets.models import ReferenceDigestor, sorting_operators


class Rule(Policy):
    """A hand-written policy: ``rule(smaller, a_last, b_last, previous) -> action`` on ReferenceDigestor features."""

    def __init__(self, n_actions, rule):
        super().__init__(n_actions)
        self.rule = rule

    def initial_state(self, batch_size, device=None):
        return None

    def forward(self, embedding, previous, state):
        smaller, a_last, b_last = embedding.bool().unbind(-1)
        act = self.rule(smaller, a_last, b_last, previous)
        return Decision(nn.functional.one_hot(act, self.n_actions).float() * 10, None)


def _ops():
    mova, movb, retb, swap = sorting_operators(reference=True)
    return mova, movb, retb, swap


def scan_agent():
    """Sub-agent: B scans to the end of the list, swapping whenever it finds a digit smaller than A's."""
    _, movb, _, swap = _ops()

    def rule(smaller, a_last, b_last, previous):  # actions: movb, swap, stop
        return torch.where(smaller, 1, torch.where(b_last, 2, 0))

    return Agent(control=ControlModule(digestor=ReferenceDigestor(), policy=Rule(3, rule)), operators=[movb, swap],
                 stop="done", max_steps=100)


def hierarchical_sorter():
    """Selection sort with the inner loop as one operator: scan, mova, retb, stop."""
    mova, _, retb, _ = _ops()
    scan = AgentOperator("scan", agent=scan_agent())

    def rule(smaller, a_last, b_last, previous):
        act = torch.where(previous == 1, torch.where(a_last & b_last, 3, 2), 0)  # after mova: retb or stop
        return torch.where(previous == 0, 1, act)  # after a scan: mova

    return Agent(control=ControlModule(digestor=ReferenceDigestor(), policy=Rule(4, rule)),
                 operators=[scan, mova, retb], stop="eop", max_steps=100)


def _solve(agent, values, lengths=None):
    env = SortingEnvironment()
    env.reset(values, lengths)
    trace = agent.solve(SortingInterface(env))
    return env, trace


def test_a_sub_agent_works_as_an_operator():
    lists = sample_lists(200, min_length=2, max_length=9, generator=torch.Generator().manual_seed(3))
    env, trace = _solve(hierarchical_sorter(), lists.values, lists.lengths)
    assert env.is_target().all() and trace.stopped.all()
    # the top level only took the coarse actions: one scan per position but the last
    n_scans = (trace.actions == 0).sum(1)
    assert n_scans.tolist() == (lists.lengths - 1).tolist()


def test_hierarchies_nest():
    sorter = AgentOperator("sort", agent=hierarchical_sorter())
    top = Agent(control=ControlModule(digestor=ReferenceDigestor(),
                                      policy=Rule(2, lambda s, a, b, previous: torch.where(previous == 0, 1, 0))),
                operators=[sorter], stop="stop", max_steps=5)
    env, trace = _solve(top, torch.tensor([[9, 3, 7, 1, 0, 4], [1, 1, 0, 5, 5, 2]]))
    assert env.is_target().all() and trace.steps.tolist() == [2, 2]


def recursive_advance(max_depth):
    """Move A once, then call itself; stop when A is on the last digit or the recursion is cut."""
    mova, *_ = _ops()
    again = AgentOperator("again", agent=None, max_depth=max_depth)

    def rule(smaller, a_last, b_last, previous):
        first = torch.where(a_last, 2, 0)
        return torch.where(previous == -1, first, torch.where(previous == 0, 1, 2))

    return Agent(control=ControlModule(digestor=ReferenceDigestor(), policy=Rule(3, rule)),
                 operators=[mova, again], stop="stop", max_steps=10)


@pytest.mark.parametrize("max_depth", [1, 3, 20])
def test_recursion_is_bounded_by_depth(max_depth):
    values = torch.arange(8).repeat(2, 1)
    env, trace = _solve(recursive_advance(max_depth), values)
    assert env.state.a.tolist() == [min(max_depth + 1, 7)] * 2
    assert trace.stopped.all()


def test_recursive_operator_outside_an_agent_is_an_error():
    rep = SortingInterface(SortingEnvironment()).environment
    rep.reset(torch.tensor([[1, 2, 3]]))
    with pytest.raises(ConfigError, match="outside an agent"):
        AgentOperator("again")(SortingInterface(rep).read(), depth=1)
    with pytest.raises(ConfigError, match="max_depth"):
        AgentOperator("again", max_depth=0)
