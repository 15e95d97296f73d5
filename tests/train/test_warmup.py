"""FitConfig.warmup_steps: a linear learning-rate warm-up that equals Adam with that schedule and resumes exactly."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import default_collate

from modnets.errors import ConfigError
from modnets.train import Classification, FitConfig, RunDir, fit


def _data(n=32):
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(4, generator=g), "y": i % 2} for i in range(n)]


def test_warmup_equals_adam_with_a_linear_ramp_then_the_constant_rate():
    data, lr, warmup = _data(), 0.05, 4
    torch.manual_seed(0)
    trained = Classification(nn.Linear(4, 2))
    reference = nn.Linear(4, 2)
    reference.load_state_dict(trained.model.state_dict())
    fit(trained, data, config=FitConfig(epochs=7, batch_size=32, lr=lr, warmup_steps=warmup, grad_clip=None),
        collate=default_collate, run=RunDir(progress=False))
    batch = default_collate(data)  # one batch per epoch: the whole set (its order does not change the mean)
    optimizer = torch.optim.Adam(reference.parameters(), lr=lr)
    for step in range(7):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        optimizer.zero_grad()
        F.cross_entropy(reference(batch["x"]), batch["y"]).backward()
        optimizer.step()
    for ours, theirs in zip(trained.model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_warmup_changes_the_early_steps_and_a_run_resumed_mid_warmup_equals_an_uninterrupted_one(tmp_path):
    def train(run, epochs, warmup):
        torch.manual_seed(0)
        objective = Classification(nn.Linear(4, 2))
        fit(objective, _data(), config=FitConfig(epochs=epochs, batch_size=8, lr=0.05, warmup_steps=warmup),
            collate=default_collate, run=run, name="w")
        return objective.model.weight.detach().clone()

    whole = train(RunDir(progress=False), 3, 10)
    assert not torch.equal(whole, train(RunDir(progress=False), 3, 0))
    train(RunDir(tmp_path, progress=False), 1, 10)  # 4 of the 10 warm-up steps, checkpointed
    assert torch.equal(train(RunDir(tmp_path, resume=True, progress=False), 3, 10), whole)


def test_a_negative_warmup_raises():
    with pytest.raises(ConfigError, match="warmup_steps"):
        FitConfig(warmup_steps=-1)
