"""``modnets run routing --quick --nproc 2`` (slow): the data-parallel run agrees with the single-process one.

Tolerance: the methods without sampling (dense, soft routing) see the same batches and the same averaged
gradients, so they agree up to rounding amplified by training: within 2 points of test accuracy. The
sampling methods (EM, top-K, REINFORCE, Gumbel) draw other routings in two processes, which changes their
quick-mode accuracy about as much as another seed does: within 12 points. Both runs take the same steps.
"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

DETERMINISTIC, SAMPLED = ("dense", "soft"), ("em", "topk", "reinforce", "gumbel")


def _run(out, *extra):
    cmd = [sys.executable, "-m", "modnets", "run", "routing", "--quick", "--no-progress", "--out", str(out), *extra]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def test_two_processes_agree_with_one(tmp_path):
    one, two = _run(tmp_path / "one"), _run(tmp_path / "two", "--nproc", "2")
    assert two["processes"] == 2 and "processes" not in one
    for part in ("compositions", "images"):
        for method in DETERMINISTIC + SAMPLED:
            a, b = one[part][method], two[part][method]
            assert a["steps"] == b["steps"], (part, method)
            tolerance = 0.02 if method in DETERMINISTIC else 0.12
            assert abs(a["test_accuracy"] - b["test_accuracy"]) <= tolerance, (part, method, a["test_accuracy"],
                                                                              b["test_accuracy"])
