import itertools

import pytest
import torch

from modnets.data import CompositionConfig, make_composition_task
from modnets.errors import ConfigError, ShapeError

SMALL = {"n_primitives": 3, "depth": 2, "dim": 5, "n_train": 600, "n_test": 90}


def test_shapes_and_items():
    train, test = make_composition_task(CompositionConfig(**SMALL))
    assert len(train) == 600 and len(test) == 90 and train.n_tasks == test.n_tasks == 9
    assert tuple(train.x.shape) == tuple(train.y.shape) == (600, 5)
    assert tuple(train.task.shape) == (600,) and tuple(train.primitives.shape) == (600, 2)
    assert tuple(train.tasks.shape) == (9, 2)
    assert tuple(train.weight.shape) == (3, 5, 5) and tuple(train.bias.shape) == (3, 5)
    item = test[7]
    assert set(item) == {"index", "x", "y", "task"} and item["index"] == 7
    assert torch.equal(item["y"], test.y[7]) and int(item["task"]) == int(test.task[7])


def test_the_same_seed_gives_the_same_problem_and_another_seed_another():
    first = make_composition_task(CompositionConfig(**SMALL, seed=3))
    again = make_composition_task(CompositionConfig(**SMALL, seed=3))
    other = make_composition_task(CompositionConfig(**SMALL, seed=4))
    for a, b, c in zip(first, again, other, strict=True):
        for key in ("x", "y", "task", "weight", "bias"):
            assert torch.equal(getattr(a, key), getattr(b, key))
        assert not torch.equal(a.x, c.x) and not torch.equal(a.weight, c.weight)


def test_every_ordered_tuple_of_primitives_is_a_task_and_appears_in_the_data():
    train, test = make_composition_task(CompositionConfig(**SMALL))
    assert sorted(map(tuple, train.tasks.tolist())) == list(itertools.product(range(3), repeat=2))
    assert torch.equal(train.tasks, test.tasks) and torch.equal(train.weight, test.weight)
    assert set(train.task.tolist()) == set(range(9)) and set(test.task.tolist()) == set(range(9))
    assert torch.equal(train.primitives, train.tasks[train.task])


def test_the_target_is_the_primitives_applied_one_after_the_other():
    train, _ = make_composition_task(CompositionConfig(**{**SMALL, "depth": 3}))
    steps = train.primitives  # (N, 3)
    z = train.x
    for step in range(3):  # one primitive at a time, in the task's order
        z = train.apply(z, steps[:, step : step + 1])
    torch.testing.assert_close(train.y, z)
    assert train.y.abs().max() < 1  # every primitive ends in tanh
    reversed_order = train.apply(train.x, steps.flip(1))
    differs = steps[:, 0] != steps[:, 2]
    assert not torch.allclose(reversed_order[differs], train.y[differs], atol=1e-3)  # order matters


def test_different_tasks_give_different_targets_for_the_same_input_and_targets_identify_their_task():
    _, test = make_composition_task(CompositionConfig(**SMALL))
    x = test.x[:1].repeat(9, 1)
    every = test.apply(x, test.tasks)  # (9, d): the input under each task
    assert torch.cdist(every, every).add(torch.eye(9)).min() > 1e-3
    assert test.task_accuracy(test.y) == 1.0
    wrong = test.apply(test.x, test.tasks[(test.task + 1) % 9])  # every example answered with another task
    assert test.task_accuracy(wrong) == 0.0


def test_noise_goes_into_the_training_targets_only():
    clean_train, clean_test = make_composition_task(CompositionConfig(**SMALL))
    noisy_train, noisy_test = make_composition_task(CompositionConfig(**SMALL, noise=0.1))
    assert torch.equal(noisy_train.x, clean_train.x)
    assert 0.05 < float((noisy_train.y - clean_train.y).std()) < 0.2
    torch.testing.assert_close(noisy_test.y, noisy_test.apply(noisy_test.x, noisy_test.primitives))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_primitives": 17, "depth": 3}, r"number of tasks\) must be <= 4096"),
        ({"gain": 0.0}, "gain must be > 0"),
        ({"noise": -0.1}, "noise >= 0"),
        ({"depth": 0}, "depth must be an int >= 1"),
    ],
)
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        CompositionConfig(**{**SMALL, **overrides})


def test_nearest_task_refuses_a_prediction_of_the_wrong_shape():
    _, test = make_composition_task(CompositionConfig(**SMALL))
    with pytest.raises(ShapeError, match=r"prediction must have shape \(90, 5\)"):
        test.nearest_task(test.y[:, :4])
