import pytest
import torch

from modnets.analysis import accuracy_by, majority_baseline, plot_error_curves
from modnets.errors import ShapeError


def test_accuracy_by_groups():
    correct = torch.tensor([True, False, True, True])
    groups = torch.tensor([2, 2, 3, 5])
    assert accuracy_by(correct, groups) == {2: 0.5, 3: 1.0, 5: 1.0}
    with pytest.raises(ShapeError):
        accuracy_by(correct, groups[:3])


def test_majority_baseline_answers_the_most_frequent_training_answer_per_group():
    train = torch.tensor([1, 1, 0, 4, 4, 3])
    train_groups = ["exist", "exist", "exist", "count", "count", "count"]
    test = torch.tensor([1, 0, 4, 3, 0])
    test_groups = ["exist", "exist", "count", "count", "new"]
    assert majority_baseline(train, train_groups, test, test_groups).tolist() == [True, False, True, False, True]
    with pytest.raises(ShapeError):
        majority_baseline(train, train_groups[:2], test, test_groups)


def test_error_plot_is_written(tmp_path):
    path = plot_error_curves({"a": {2: 0.9, 3: 0.8}}, tmp_path / "e.png", trained_up_to=2,
                             references={"prior": {2: 0.5, 3: 0.5}})
    assert path.stat().st_size > 1000
