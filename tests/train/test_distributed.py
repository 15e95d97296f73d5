"""Data-parallel ``fit`` on torch.distributed (gloo, two processes on this machine).

Each test starts real processes the way torchrun does (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and
compares what they trained with one process, or with each other.
"""

import os
import socket
import subprocess
import sys
import textwrap

import torch

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    from modnets.models import modular_mlp
    from modnets.train import EndToEnd, FitConfig, RunDir, TopKBufferConfig, fit, generalized_em
    from modnets.train import init_from_env, world

    kind, out = sys.argv[1], sys.argv[2]
    ckpt = sys.argv[3] if len(sys.argv) > 3 else None
    init_from_env()
    rank, size = world()
    torch.manual_seed(0)
    n = 100  # batches of 16: the last one holds 4, two per process
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)
    data = [{"x": x[i], "y": y[i], "index": i} for i in range(n)]

    def collate(items):
        return {"x": torch.stack([it["x"] for it in items]), "y": torch.stack([it["y"] for it in items]),
                "index": torch.tensor([it["index"] for it in items])}

    mode = "soft" if kind == "soft" else "sample"
    net = modular_mlp(d_model=8, n_modules=4, d_in=6, n_out=3, mode=mode)
    objective = (EndToEnd(net) if kind == "soft"
                 else generalized_em(net, dataset_size=n, config=TopKBufferConfig.em(samples=3)))
    config = FitConfig(epochs=3, batch_size=16, lr=1e-2, log_every=1, checkpoint_every=5, keep_checkpoints=100)
    result = fit(objective, data, config=config, collate=collate,
                 run=RunDir(ckpt, resume=ckpt is not None, progress=False))
    torch.save({"state": objective.state_dict(), "history": result.history, "steps": result.steps,
                "rank": rank, "size": size}, f"{out}-{rank}.pt")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(tmp_path, kind: str, nproc: int, *extra: str) -> list[dict]:
    out = tmp_path / f"{kind}-{nproc}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc > 1:
        env.update(WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, kind, str(out), *extra], stderr=subprocess.PIPE,
                         env={**env, "RANK": str(r), "LOCAL_RANK": str(r)} if nproc > 1 else env)
        for r in range(nproc)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-3000:]
    return [torch.load(f"{out}-{r}.pt") for r in range(nproc)]


def test_two_processes_train_the_same_model_as_one(tmp_path):
    (one,), two = _train(tmp_path, "soft", 1), _train(tmp_path, "soft", 2)
    assert [r["size"] for r in two] == [2, 2] and one["size"] == 1
    assert one["steps"] == two[0]["steps"] == 3 * 7  # every batch, the short last one included
    for name, value in one["state"].items():
        # each step averages the two halves' gradients: the step on the whole batch, up to rounding
        torch.testing.assert_close(two[0]["state"][name], value, atol=1e-5, rtol=1e-4, msg=name)
        assert torch.equal(two[0]["state"][name], two[1]["state"][name]), name  # the processes agree exactly
    # the logged loss is the mean over the processes, i.e. over the whole batch
    losses_one = torch.tensor([h["loss"] for h in one["history"]])
    losses_two = torch.tensor([h["loss"] for h in two[0]["history"]])
    torch.testing.assert_close(losses_two, losses_one, atol=1e-4, rtol=1e-4)


def test_em_tables_agree_across_processes_and_a_data_parallel_run_resumes_exactly(tmp_path):
    ckpt = tmp_path / "ckpt"
    whole = _train(tmp_path, "em", 2, str(ckpt))  # checkpoints every 5 of its 21 steps
    a, b = whole[0]["state"], whole[1]["state"]
    assert a.keys() == b.keys()
    for name in a:  # parameters, the incumbent table, the step counter: identical in both processes
        assert torch.equal(a[name], b[name]), name
    # each process saw half the examples, yet every example's incumbent is known to both
    assert bool(a["buffer.valid"].all()) and bool(torch.isfinite(a["buffer.score"]).all())

    for path in (ckpt / "checkpoints" / "train").glob("step-*.pt"):  # as if both were killed after step 10
        if int(path.stem.split("-")[1]) > 10:
            path.unlink()
    resumed = _train(tmp_path, "em", 2, str(ckpt))
    for rank in (0, 1):
        def values(run):
            return [{k: v for k, v in row.items() if k != "seconds"} for row in run["history"]]

        assert values(resumed[rank]) == values(whole[rank])
        for name, value in whole[rank]["state"].items():  # each process's own random stream was restored too
            assert torch.equal(resumed[rank]["state"][name], value), (rank, name)
