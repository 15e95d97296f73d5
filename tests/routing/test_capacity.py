"""Capacity placement and expert choice equal their naive definitions (a greedy loop over picks, a
loop over experts), and say exactly who was dropped, rerouted or chosen."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modnets.errors import ConfigError, ShapeError
from modnets.routing import assign_capacity, expert_capacity, expert_choice


def _naive_assign(choice, priority, capacity, n_experts, ranking=None):
    """Greedy placement, one pick at a time, in the documented order: (rank, -priority, row)."""
    n, k = len(choice), len(choice[0])
    final = [list(row) for row in choice]
    kept = [[False] * k for _ in range(n)]
    load = [0] * n_experts
    overflowing = []
    for j, _, b in sorted((j, -priority[b][j], b) for b in range(n) for j in range(k)):
        e = choice[b][j]
        if load[e] < capacity:
            load[e] += 1
            kept[b][j] = True
        else:
            overflowing.append((b, j))
    if ranking is not None:
        for b, j in overflowing:
            for e in ranking[b]:
                if load[e] < capacity and e not in final[b]:
                    final[b][j], kept[b][j] = e, True
                    load[e] += 1
                    break
    return final, kept, load


@st.composite
def _placements(draw):
    n_experts = draw(st.integers(1, 5))
    k = draw(st.integers(1, min(3, n_experts)))
    n = draw(st.integers(1, 12))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if draw(st.booleans()):  # skewed: most first picks on expert 0
        scores = torch.rand(n, n_experts, generator=gen) + torch.tensor([2.0] + [0.0] * (n_experts - 1))
    else:
        scores = torch.rand(n, n_experts, generator=gen)
    ranking = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    choice = ranking[:, :k]
    priority = torch.tensor([0.1, 0.5, 0.9])[torch.randint(0, 3, (n, k), generator=gen)]  # many ties
    factor = draw(st.sampled_from([0.25, 0.5, 1.0, 1.5]))
    reroute = draw(st.booleans())
    return choice, priority, expert_capacity(n, k, n_experts, factor), n_experts, ranking if reroute else None


@settings(max_examples=80, deadline=None)
@given(_placements())
def test_assign_capacity_equals_the_greedy_placement(case):
    choice, priority, capacity, n_experts, ranking = case
    over = assign_capacity(choice, priority, capacity, n_experts, ranking=ranking)
    final, kept, load = _naive_assign(
        choice.tolist(), priority.tolist(), capacity, n_experts, None if ranking is None else ranking.tolist()
    )
    assert over.choice.tolist() == final and over.kept.tolist() == kept and over.load.tolist() == load
    assert max(load) <= capacity
    # the lists and counts describe the same picks
    dropped = ~over.kept
    assert torch.equal(torch.stack([over.dropped_rows, over.dropped_picks], 1), dropped.nonzero())
    assert torch.equal(over.dropped, torch.bincount(choice[dropped], minlength=n_experts))
    moved = over.choice != choice
    assert torch.equal(torch.stack([over.rerouted_rows, over.rerouted_picks], 1), moved.nonzero())
    assert torch.equal(over.rerouted_from, choice[moved]) and torch.equal(over.rerouted_to, over.choice[moved])
    assert torch.equal(over.rerouted, torch.bincount(choice[moved], minlength=n_experts))
    assert int(over.load.sum() + over.dropped.sum()) == choice.numel()
    for row in over.choice.tolist():  # rerouting never repeats an expert within a row
        assert len(set(row)) == len(row)


def test_first_choices_are_placed_before_second_choices_then_by_priority_then_by_row():
    choice = torch.tensor([[1, 0], [0, 1], [0, 1], [0, 1]])
    priority = torch.tensor([[0.9, 0.9], [0.2, 0.1], [0.7, 0.1], [0.2, 0.1]])
    over = assign_capacity(choice, priority, 2, 2)
    # expert 0: first choices of rows 2 (0.7), then 1 and 3 (0.2, tie: row 1 first); row 0's second choice last
    assert over.kept.tolist() == [[True, False], [True, True], [True, False], [False, False]]
    assert over.dropped.tolist() == [2, 2] and over.dropped_rows.tolist() == [0, 2, 3, 3]


def test_capacity_rounds_up_and_is_at_least_one():
    assert expert_capacity(10, 1, 4, 1.0) == 3
    assert expert_capacity(12, 2, 4, 1.0) == 6
    assert expert_capacity(10, 1, 1, 1.1) == 11  # not 12 from 11.000000000000002
    assert expert_capacity(1, 1, 8, 0.5) == 1


def test_expert_choice_takes_each_experts_top_rows_ties_by_row():
    scores = torch.tensor([[0.5, 0.2], [0.5, 0.9], [0.7, 0.2], [0.1, 0.2]], requires_grad=True)
    chosen = expert_choice(scores, 2)
    assert chosen.rows.tolist() == [[2, 0], [1, 0]]
    torch.testing.assert_close(chosen.weights, torch.tensor([[0.7, 0.5], [0.9, 0.2]]))
    chosen.weights.sum().backward()
    assert scores.grad.tolist() == [[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (
            lambda: assign_capacity(torch.zeros(3, 1, dtype=torch.long), torch.ones(3, 2), 1, 2),
            ShapeError,
            ["priority"],
        ),
        (
            lambda: assign_capacity(torch.zeros(3, 1, dtype=torch.long), torch.ones(3, 1), 0, 2),
            ConfigError,
            ["capacity=0"],
        ),
        (
            lambda: assign_capacity(
                torch.zeros(3, 1, dtype=torch.long), torch.ones(3, 1), 1, 2, ranking=torch.zeros(3, 3, dtype=torch.long)
            ),
            ShapeError,
            ["ranking", "E=2"],
        ),
        (lambda: expert_choice(torch.rand(3, 2), 4), ConfigError, ["capacity=4", "N=3"]),
    ],
)
def test_bad_input_raises_named_error(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value)
