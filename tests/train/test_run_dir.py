"""RunDir: where a training writes, by name; nested trainings sit side by side; nothing written without a path."""

import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from modnets.errors import ConfigError
from modnets.train import Classification, FitConfig, RunDir, fit


def _data(n=32):
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(4, generator=g), "y": i % 2} for i in range(n)]


def test_logs_and_checkpoints_go_under_the_name_and_sub_runs_prefix_it(tmp_path):
    run = RunDir(tmp_path, progress=False)
    fit(Classification(nn.Linear(4, 2)), _data(), config=FitConfig(epochs=1, batch_size=8, log_every=1),
        collate=default_collate, run=run.sub("stage1"), name="head")
    assert (tmp_path / "tensorboard" / "stage1" / "head" / "scalars.jsonl").read_text().count("\n") == 4
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "stage1" / "head").glob("step-*.pt")) == [
        "step-00000004.pt"]
    assert run.sub("a").sub("b").checkpoints("c") == tmp_path / "checkpoints" / "a" / "b" / "c"
    assert run.folder("cache") == tmp_path / "cache" and (tmp_path / "cache").is_dir()


def test_a_run_without_a_path_writes_nothing_and_cannot_resume_or_keep_files(tmp_path):
    run = RunDir(progress=False)
    assert run.logger("x") is None and run.checkpoints("x") is None
    with pytest.raises(ConfigError, match="give it a run folder"):
        run.folder("cache")
    with pytest.raises(ConfigError, match="resume=True needs a run folder"):
        RunDir(resume=True)


def test_quiet_keeps_the_folder_and_resume_but_turns_progress_off(tmp_path):
    run = RunDir(tmp_path, resume=True).sub("m").quiet()
    assert (run.path, run.resume, run.progress, run.prefix) == (tmp_path, True, False, "m")


def test_resume_continues_from_the_named_checkpoint(tmp_path):
    torch.manual_seed(0)
    first = Classification(nn.Linear(4, 2))
    fit(first, _data(), config=FitConfig(epochs=1, batch_size=8), collate=default_collate,
        run=RunDir(tmp_path, progress=False), name="a")
    again = Classification(nn.Linear(4, 2))
    done = fit(again, _data(), config=FitConfig(epochs=2, batch_size=8), collate=default_collate,
               run=RunDir(tmp_path, resume=True, progress=False), name="a")
    assert done.resumed_from == 4 and done.steps == 8
