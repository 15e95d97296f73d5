"""Soak test (slow): half an hour of training under random SIGKILLs and resumes.

One training run (generalised EM on a routed model: parameters, optimiser, incumbent table, step counter
and random generators all in the checkpoint) is killed at random moments, again and again, each time
resumed from its checkpoints, until it completes; then it starts over. Every completed run must equal the
uninterrupted reference bit for bit, log every step exactly once, and every checkpoint left on disk at
any kill must load. ``MODNETS_SOAK_SECONDS`` sets the duration (default 1800).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from modnets.train import Checkpointer

pytestmark = pytest.mark.slow

SCRIPT = '''
import json, sys, torch
from torch.utils.data import default_collate
from modnets.models import modular_mlp
from modnets.train import FitConfig, RunDir, TopKBufferConfig, fit, generalized_em
torch.manual_seed(0)
g = torch.Generator().manual_seed(1)
data = [{"index": i, "x": torch.randn(12, generator=g), "y": int(i % 3)} for i in range(2000)]
net = modular_mlp(d_in=12, d_model=16, n_modules=4, n_out=3)
objective = generalized_em(net, dataset_size=len(data), config=TopKBufferConfig.em(samples=3))
result = fit(objective, data, config=FitConfig(epochs=4, batch_size=16, lr=1e-2, checkpoint_every=7, log_every=1),
             collate=default_collate, run=RunDir(sys.argv[1], resume=True, progress=False))
torch.save(objective.state_dict(), sys.argv[2])
json.dump({"steps": result.steps, "history": [{k: v for k, v in r.items() if k != "seconds"} for r in result.history]},
          open(sys.argv[3], "w"))
'''


def _newest_step(run_dir) -> int:
    ckpt = run_dir / "checkpoints" / "train"
    paths = Checkpointer(ckpt).paths() if ckpt.exists() else []
    return int(paths[0].stem.split("-")[1]) if paths else 0


def test_training_survives_half_an_hour_of_random_kills(tmp_path):
    budget = float(os.environ.get("MODNETS_SOAK_SECONDS", "1800"))
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def args(name):
        return [sys.executable, str(script), str(tmp_path / f"{name}-ckpt"), str(tmp_path / f"{name}.pt"),
                str(tmp_path / f"{name}.json")]

    t0 = time.monotonic()
    subprocess.run(args("reference"), check=True, env=env)
    reference = torch.load(tmp_path / "reference.pt")
    ref_metrics = json.loads((tmp_path / "reference.json").read_text())
    assert [h["step"] for h in ref_metrics["history"]] == list(range(1, ref_metrics["steps"] + 1))

    rng = random.Random(0)
    total, runs, kills = ref_metrics["steps"], 0, 0
    while time.monotonic() - t0 < budget:
        name = f"run{runs}"
        ckpt = tmp_path / f"{name}-ckpt"
        while True:  # kill and resume until an attempt gets to the end
            done = _newest_step(ckpt)
            target = rng.randint(done + 1, total - 1) if done + 1 < total else None  # None: let it finish
            proc = subprocess.Popen(args(name), env=env, stderr=subprocess.PIPE)
            while target is not None and proc.poll() is None and _newest_step(ckpt) < target:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))  # somewhere between two checkpoints
            if target is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                for path in Checkpointer(ckpt / "checkpoints" / "train").paths():  # no torn or corrupt file
                    torch.load(path, weights_only=False)
                continue
            _, err = proc.communicate()
            assert proc.returncode == 0, err.decode()[-3000:]
            break
        metrics = json.loads((tmp_path / f"{name}.json").read_text())
        assert metrics == ref_metrics  # every step logged once, same values: no step lost or repeated
        state = torch.load(tmp_path / f"{name}.pt")
        for key in reference:
            assert torch.equal(reference[key], state[key]), (name, key)
        runs += 1
    print(f"soak: {runs} complete runs, {kills} kills, {time.monotonic() - t0:.0f} s")
    assert runs >= 1 and kills >= 1
