import os
import subprocess
import sys
import textwrap
import time

import torch

from modnets.hub import Hub

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from modnets.hub import Hub
    from modnets.models import Measure
    from modnets.types import Mask, Probs

    root, writer, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    hub = Hub(root)
    module = Measure(hidden=4, n_answers=3, mask=Mask(), answer=Probs(3))
    (go.parent / f"ready{writer}").touch()  # imports done: waiting for the start signal
    while not go.exists():
        time.sleep(0.002)
    start = time.time()
    for i in range(n):
        tag = 1000 * writer + i
        with torch.no_grad():
            module.mlp.net[0].bias.fill_(tag)  # each save stores different weights
        hub.save(module, "shared", seed=tag, metrics={"writer": writer})
    print(start, time.time())
    """
)


def test_two_processes_saving_at_the_same_time_lose_nothing(tmp_path):
    root, go, n = tmp_path / "hub", tmp_path / "go", 50
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(w), str(n), str(go)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for w in (1, 2)
    ]
    deadline = time.monotonic() + 240
    while not all((tmp_path / f"ready{w}").exists() for w in (1, 2)):  # importing torch can take seconds
        assert time.monotonic() < deadline and all(p.poll() is None for p in writers), "a writer never got ready"
        time.sleep(0.01)
    go.touch()  # both start saving at once
    spans = []
    for p in writers:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-3000:]
        spans.append([float(t) for t in out.split()])
    (start1, end1), (start2, end2) = spans
    assert start1 < end2 and start2 < end1  # the two writers were saving at the same time

    hub = Hub(root)
    entries = hub.entries()
    assert [e.version for e in entries] == list(range(1, 2 * n + 1))  # every save got its own version
    assert hub.versions("shared") == list(range(1, 2 * n + 1))
    tags = [hub.manifest("shared", e.version).provenance.seed for e in entries]
    assert sorted(tags) == [1000 * w + i for w in (1, 2) for i in range(n)]  # nothing lost, nothing doubled
    for e, tag in zip(entries, tags, strict=True):  # and each version holds the weights of its own save
        bias = hub.load("shared", e.version).mlp.net[0].bias
        assert torch.equal(bias, torch.full_like(bias, tag))
    report = hub.verify()
    assert report.ok and report.checked == 2 * n and report.temporary == 0
