"""fit: atomic checkpoints, exact resume after SIGKILL, fallback past a corrupt checkpoint, numerical guards."""

import json
import random
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
from torch import nn

from modnets.errors import ConfigError, NumericalError
from modnets.train import Checkpointer, CheckpointWarning, FitConfig, RunDir, fit

SCRIPT = '''
import json, sys, torch
from torch.utils.data import default_collate
from modnets.models import modular_mlp
from modnets.train import FitConfig, Reinforce, ReinforceConfig, RunDir, fit
torch.manual_seed(0)
g = torch.Generator().manual_seed(1)
data = [{"x": torch.randn(12, generator=g), "y": int(i % 3)} for i in range(1600)]
net = modular_mlp(d_in=12, d_model=16, n_modules=4, n_out=3)        # routers sample: the RNG matters
objective = Reinforce(net, ReinforceConfig(baseline="moving_average"))
result = fit(objective, data, config=FitConfig(epochs=3, batch_size=8, lr=1e-2, checkpoint_every=25, log_every=25),
             collate=default_collate, run=RunDir(sys.argv[1], resume=True, progress=False))
torch.save(objective.state_dict(), sys.argv[2])
json.dump({"steps": result.steps, "history": [{k: v for k, v in r.items() if k != "seconds"} for r in result.history],
           "resumed_from": result.resumed_from}, open(sys.argv[3], "w"))
'''


def run_script(tmp_path, name, kill_after_checkpoint=None):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ckpt, params, metrics = tmp_path / f"{name}-ckpt", tmp_path / f"{name}.pt", tmp_path / f"{name}.json"
    args = [sys.executable, str(script), str(ckpt), str(params), str(metrics)]
    if kill_after_checkpoint is not None:
        proc = subprocess.Popen(args)
        deadline = time.time() + 120
        while time.time() < deadline and not any((ckpt / "checkpoints" / "train").glob("step-*.pt")):
            time.sleep(0.01)
        time.sleep(kill_after_checkpoint)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    subprocess.run(args, check=True)
    return torch.load(params), json.loads(metrics.read_text())


def test_sigkill_at_a_random_moment_then_resume_gives_bit_identical_results(tmp_path):
    reference, ref_metrics = run_script(tmp_path, "reference")
    resumed, metrics = run_script(tmp_path, "killed", kill_after_checkpoint=random.uniform(0.0, 0.5))
    assert metrics["resumed_from"] is not None and 0 < metrics["resumed_from"] < metrics["steps"]
    assert metrics["steps"] == ref_metrics["steps"] == 600
    assert metrics["history"] == ref_metrics["history"]
    assert reference.keys() == resumed.keys()
    for key in reference:
        assert torch.equal(reference[key], resumed[key]), key


def dataset(n=64):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, generator=g), torch.randn(1, generator=g)) for _ in range(n)]


def collate(items):
    return {"x": torch.stack([i[0] for i in items]), "y": torch.stack([i[1] for i in items])}


class Regressor(nn.Module):
    """A user-written objective: regression by squared error."""

    batch_keys = {"x": "(B, 4) inputs", "y": "(B, 1) targets"}

    def __init__(self, nan_at=None, where="loss"):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        self.nan_at, self.where, self.calls = nan_at, where, 0
        self.body[2].weight.register_hook(  # a finite loss whose gradient is not
            lambda g: g * float("inf") if self.calls == self.nan_at and self.where == "grad" else g
        )

    def loss(self, batch):
        self.calls += 1
        err = (self.body(batch["x"]) - batch["y"]).pow(2).mean()
        if self.calls == self.nan_at and self.where == "loss":
            err = err * float("nan")
        return {"loss": err, "loss_mse": err}

    def predict(self, batch):
        return self.body(batch["x"])


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one_with_a_warning(tmp_path):
    config = FitConfig(epochs=2, batch_size=8, lr=1e-2, checkpoint_every=5, keep_checkpoints=3)
    torch.manual_seed(0)
    reference = Regressor()
    fit(reference, dataset(), config=config, collate=collate, run=RunDir(tmp_path / "a", progress=False))
    torch.manual_seed(0)
    model = Regressor()
    fit(model, dataset(), config=config, collate=collate, run=RunDir(tmp_path / "b", progress=False))
    newest = Checkpointer(tmp_path / "b" / "checkpoints" / "train").paths()[0]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a full disk
    torch.manual_seed(123)
    resumed = Regressor()
    with pytest.warns(CheckpointWarning, match=newest.name):
        result = fit(resumed, dataset(), config=config, collate=collate,
                     run=RunDir(tmp_path / "b", resume=True, progress=False))
    assert result.resumed_from == 15 and result.steps == 16
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_fresh_run_replaces_older_checkpoints(tmp_path):
    old = Checkpointer(tmp_path / "checkpoints" / "train")
    old.save({"steps": 900}, 900)
    stale = old.directory / ".step-00000901.pt.123-abcdef12.tmp"  # what a killed write leaves behind
    stale.write_bytes(b"partial")
    fit(Regressor(), dataset(), config=FitConfig(epochs=1, batch_size=8, checkpoint_every=4), collate=collate,
        run=RunDir(tmp_path, progress=False))
    assert [p.name for p in old.paths()] == ["step-00000008.pt", "step-00000004.pt"]
    assert not stale.exists()


def test_nan_loss_stops_with_the_step_and_quantity_and_keeps_the_last_checkpoint(tmp_path):
    config = FitConfig(epochs=2, batch_size=8, checkpoint_every=2)
    with pytest.raises(NumericalError, match=r"step 5: loss term 'loss' of Regressor is NaN") as info:
        fit(Regressor(nan_at=5), dataset(), config=config, collate=collate, run=RunDir(tmp_path, progress=False))
    assert info.value.step == 5 and info.value.quantity == "loss term 'loss'"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = Checkpointer(tmp_path / "checkpoints" / "train").load_latest()
    assert state["steps"] == 4


def test_infinite_gradient_names_the_module_and_parameter():
    config = FitConfig(epochs=1, batch_size=8)
    with pytest.raises(NumericalError, match=r"step 2: gradient of 'weight' in module 'body.2'") as info:
        fit(Regressor(nan_at=2, where="grad"), dataset(), config=config, collate=collate, run=RunDir(progress=False))
    assert info.value.module == "body.2"


def test_skip_mode_drops_the_bad_batch_and_counts_it():
    model = Regressor(nan_at=3)
    before = [p.detach().clone() for p in model.parameters()]
    result = fit(model, dataset(), config=FitConfig(epochs=1, batch_size=8, on_nonfinite="skip", log_every=1),
                 collate=collate, run=RunDir(progress=False))
    assert result.skipped == 1 and result.steps == 8
    assert result.history[-1]["skipped"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bad_reliability_options_raise():
    with pytest.raises(ConfigError, match="on_nonfinite"):
        FitConfig(on_nonfinite="ignore")
    with pytest.raises(ConfigError, match="checkpoint_every"):
        FitConfig(checkpoint_every=0)
    with pytest.raises(ConfigError, match="resume=True needs a run folder"):
        RunDir(resume=True)


def test_a_nan_between_modules_with_interface_checking_on_names_the_step_and_the_interface(tmp_path):
    import modnets
    from modnets.modules import Signature, Typed
    from modnets.types import Latent

    class TwoModules(nn.Module):
        batch_keys = {"x": "(B, 4) inputs", "y": "(B, 1) targets"}

        def __init__(self):
            super().__init__()
            self.first = Typed(nn.Linear(4, 4), Signature(inputs={"x": Latent(4)}, output=Latent(4)))
            self.second = nn.Linear(4, 1)
            self.calls = 0

        def loss(self, batch):
            self.calls += 1
            h = self.first(batch["x"] * (float("nan") if self.calls == 3 else 1.0))
            return {"loss": (self.second(h) - batch["y"]).pow(2).mean()}

        def predict(self, batch):
            return self.second(self.first(batch["x"]))

    previous = modnets.check_interfaces(True)
    try:
        with pytest.raises(NumericalError, match=r"step 3: module 'Linear' input 'x'") as info:
            fit(TwoModules(), dataset(), config=FitConfig(epochs=1, batch_size=8, checkpoint_every=2),
                collate=collate, run=RunDir(tmp_path, progress=False))
    finally:
        modnets.check_interfaces(previous)
    assert info.value.step == 3 and info.value.quantity == "interface value"
    assert info.value.module == "module 'Linear' input 'x'"
    assert Checkpointer(tmp_path / "checkpoints" / "train").load_latest()["steps"] == 2  # the last good one is intact
