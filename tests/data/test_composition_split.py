import itertools

import pytest
import torch

from modnets.data import CompositionConfig, composition_split, make_composition_task
from modnets.errors import ConfigError

SMALL = {"n_primitives": 4, "depth": 2, "dim": 5, "n_train": 800, "n_test": 200}
CASES = [({}, 1), ({}, 2), ({"depth": 3}, 1), ({"depth": 3, "n_primitives": 3}, 2), ({"n_primitives": 5}, 3)]


def adjacent_pairs(steps: torch.Tensor) -> set[tuple[int, int, int]]:
    """Every (step, primitive at step, primitive at step + 1) of rows of primitives (N, L)."""
    return {(i, a, b) for row in steps.tolist() for i, (a, b) in enumerate(itertools.pairwise(row))}


@pytest.mark.parametrize(("changes", "held_out"), CASES)
def test_held_out_tasks_and_pairs_never_occur_in_training(changes, held_out):
    split = composition_split(CompositionConfig(**{**SMALL, **changes}), held_out=held_out)
    held_tasks = set(split.held_out_tasks.tolist())
    assert held_tasks and not held_tasks & set(split.train.task.tolist())
    assert not held_tasks & set(split.test.task.tolist())
    assert set(split.held_out.task.tolist()) <= held_tasks
    pairs = set(map(tuple, split.held_out_pairs.tolist()))
    assert not pairs & adjacent_pairs(split.train.primitives)
    assert not pairs & adjacent_pairs(split.test.primitives)
    # every held-out example has a held-out pair, and every task without one is trained
    assert all(adjacent_pairs(row[None]) & pairs for row in split.held_out.primitives)
    for t, row in enumerate(split.train.tasks):
        assert (t in held_tasks) == bool(adjacent_pairs(row[None]) & pairs)


@pytest.mark.parametrize(("changes", "held_out"), CASES)
def test_every_primitive_occurs_at_every_step_of_training(changes, held_out):
    config = CompositionConfig(**{**SMALL, **changes})
    split = composition_split(config, held_out=held_out)
    steps = split.train.primitives
    for step in range(config.depth):
        assert set(steps[:, step].tolist()) == set(range(config.n_primitives))


@pytest.mark.parametrize(("changes", "held_out"), CASES)
def test_the_rule_holds_out_held_out_partners_per_primitive_and_step(changes, held_out):
    config = CompositionConfig(**{**SMALL, **changes})
    p, depth = config.n_primitives, config.depth
    pairs = composition_split(config, held_out=held_out).held_out_pairs
    assert tuple(pairs.shape) == ((depth - 1) * p * held_out, 3) and len(set(map(tuple, pairs.tolist()))) == len(pairs)
    for step in range(depth - 1):
        mine = pairs[pairs[:, 0] == step]
        assert torch.bincount(mine[:, 1], minlength=p).tolist() == [held_out] * p  # successors held out per a
        assert torch.bincount(mine[:, 2], minlength=p).tolist() == [held_out] * p  # predecessors held out per b


def test_two_steps_of_four_primitives_hold_out_four_of_sixteen_tasks():
    split = composition_split(CompositionConfig(**SMALL))
    assert len(split.held_out_tasks) == 4 and len(set(split.train.task.tolist())) == 12
    assert split.train.n_tasks == 16 and len(split.held_out) == len(split.test) == 200 and len(split.train) == 800


def test_the_problem_is_the_one_of_make_composition_task_and_the_split_is_seeded():
    config = CompositionConfig(**SMALL, seed=3)
    train, _ = make_composition_task(config)
    split = composition_split(config)
    for part in split[:3]:
        assert torch.equal(part.weight, train.weight) and torch.equal(part.tasks, train.tasks)
    torch.testing.assert_close(split.held_out.y, split.held_out.apply(split.held_out.x, split.held_out.primitives))
    assert split.held_out.task_accuracy(split.held_out.y) == 1.0  # the targets tell the unseen tasks apart
    again = composition_split(config)
    assert torch.equal(split.held_out_pairs, again.held_out_pairs) and torch.equal(split.train.x, again.train.x)
    others = {tuple(map(tuple, composition_split(config, seed=s).held_out_pairs.tolist())) for s in range(6)}
    assert len(others) > 1


def test_description_is_the_one_hot_primitive_of_each_step():
    split = composition_split(CompositionConfig(**{**SMALL, "depth": 3}))
    desc = split.held_out.description
    assert tuple(desc.shape) == (200, 12) and desc.dtype == torch.float32
    assert torch.equal(desc.view(200, 3, 4).argmax(-1), split.held_out.primitives)
    assert torch.equal(desc.sum(1), torch.full((200,), 3.0))


@pytest.mark.parametrize(("changes", "kwargs", "message"), [
    ({"depth": 1}, {}, "depth >= 2"),
    ({}, {"held_out": 0}, "1..3"),
    ({}, {"held_out": 4}, "1..3"),
    ({}, {"held_out": True}, "held_out=True"),
    ({}, {"seed": -1}, "seed=-1"),
])
def test_bad_arguments_raise_config_errors_that_name_them(changes, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        composition_split(CompositionConfig(**{**SMALL, **changes}), **kwargs)


def test_a_config_of_another_kind_is_refused():
    with pytest.raises(ConfigError, match="CompositionConfig"):
        composition_split({"n_primitives": 4})
