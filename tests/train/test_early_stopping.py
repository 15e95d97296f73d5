"""fit(valid=...): the validation loss after every epoch, FitConfig.patience stops training, the best epoch's
parameters are kept, validating leaves training unchanged, and a killed run resumes exactly."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import default_collate

from modnets.errors import ConfigError
from modnets.train import Classification, FitConfig, RunDir, fit


def _data(n=32, flip=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return [{"x": x[i], "y": int(1 - y[i]) if flip else int(y[i])} for i in range(n)]


def _model():
    torch.manual_seed(0)
    return Classification(nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 2)))


def _fit(objective, valid=None, run=None, **config):
    settings = {"epochs": 5, "batch_size": 8, "lr": 0.05, **config}
    return fit(objective, _data(), config=FitConfig(**settings), collate=default_collate,
               run=run or RunDir(progress=False), name="m", valid=valid)


def _valid_loss(objective, valid):
    batch = default_collate(valid)
    objective.eval()
    with torch.no_grad():
        return float(F.cross_entropy(objective.model(batch["x"]), batch["y"]))


def test_the_validation_loss_is_measured_every_epoch_and_the_best_epochs_parameters_are_kept():
    valid = _data(16, seed=1)
    objective = _model()
    result = _fit(objective, valid, lr=0.2)
    assert len(result.valid_loss) == 5
    assert result.best_epoch == 1 + min(range(5), key=result.valid_loss.__getitem__)
    assert _valid_loss(objective, valid) == pytest.approx(min(result.valid_loss), rel=1e-5)
    assert result.valid_loss[-1] < result.valid_loss[0]  # learnable labels: it learns


def test_patience_stops_when_the_validation_loss_rises_and_the_model_is_the_best_epochs():
    # the validation labels are the training labels flipped: its loss rises from the first epoch on
    result = _fit(objective := _model(), _data(16, flip=True, seed=1), patience=2)
    assert result.best_epoch == 1 and len(result.valid_loss) == 3
    assert result.valid_loss[2] > result.valid_loss[1] > result.valid_loss[0]
    assert result.steps == 3 * 4
    once = _model()
    _fit(once, epochs=1)
    for ours, theirs in zip(objective.parameters(), once.parameters(), strict=True):
        assert torch.equal(ours, theirs)  # epoch 1's parameters, and validating drew no random numbers


def test_validating_leaves_the_training_steps_unchanged():
    with_valid, without = _fit(_model(), _data(16, seed=1)), _fit(_model())
    assert [r["loss"] for r in with_valid.history] == [r["loss"] for r in without.history]


@pytest.mark.parametrize("kept", [6, 12])  # killed mid-epoch; killed after a checkpoint at an epoch's end
def test_a_killed_run_with_early_stopping_resumes_bit_for_bit(tmp_path, kept):
    valid = _data(16, flip=True, seed=1)
    whole = _fit(uninterrupted := _model(), valid, patience=3, epochs=8, lr=0.02)
    killed = tmp_path / "killed"
    _fit(_model(), valid, RunDir(killed, progress=False), patience=3, epochs=8, lr=0.02, checkpoint_every=3,
         keep_checkpoints=100)
    for path in (killed / "checkpoints" / "m").glob("step-*.pt"):
        if int(path.stem.removeprefix("step-")) > kept:
            path.unlink()
    resumed = _fit(objective := _model(), valid, RunDir(killed, resume=True, progress=False), patience=3,
                   epochs=8, lr=0.02, checkpoint_every=3, keep_checkpoints=100)
    assert resumed.resumed_from == kept
    assert resumed.valid_loss == whole.valid_loss and resumed.best_epoch == whole.best_epoch
    assert resumed.steps == whole.steps < 8 * 4
    for ours, theirs in zip(objective.parameters(), uninterrupted.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_patience_without_a_validation_set_and_a_bad_patience_raise():
    with pytest.raises(ConfigError, match="validation set"):
        _fit(_model(), patience=2)
    with pytest.raises(ConfigError, match="patience"):
        FitConfig(patience=0)


def test_a_finite_validation_loss_replaces_a_nan_best():
    from modnets.train._supervised import _EarlyStopping

    watch, model = _EarlyStopping(patience=2), nn.Linear(1, 1)
    watch.update(float("nan"), model)
    watch.update(2.0, model)
    watch.update(3.0, model)
    assert watch.best_epoch == 2 and not watch.stopped
    watch.update(float("nan"), model)
    assert watch.stopped


def test_resuming_a_run_trained_without_validation_marks_its_epochs_unmeasured(tmp_path):
    _fit(_model(), run=RunDir(tmp_path, progress=False), epochs=2)
    result = _fit(_model(), _data(16, seed=1), RunDir(tmp_path, resume=True, progress=False), epochs=4)
    # epoch 1 ended before any validation; epoch 2's end is validated on resume, with the state it left
    assert len(result.valid_loss) == 4 and math.isnan(result.valid_loss[0])
    assert not any(math.isnan(v) for v in result.valid_loss[1:]) and result.best_epoch >= 2
