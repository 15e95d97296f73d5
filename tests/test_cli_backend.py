"""`modnets run --backend / --ray-address`: passed to experiments that run training-plan stages."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import modnets.experiments
from modnets.cli import main
from modnets.experiments import Report


@dataclass
class StagedConfig:
    quick: bool = False
    seed: int = 0
    backend: str = "sequential"
    ray_address: str | None = None

    @classmethod
    def for_mode(cls, quick, seed):
        return cls(quick=quick, seed=seed)


class Staged:
    """An experiment whose Config has a backend field; it records the config it was run with."""

    Config = StagedConfig
    seen: list[StagedConfig] = []

    @staticmethod
    def run(config, out, progress=True, resume=False):
        Staged.seen.append(config)
        return Report(name="staged", title="staged", summary="", headline="| done |", metrics={})


@pytest.fixture
def staged(monkeypatch):
    Staged.seen = []
    monkeypatch.setattr(modnets.experiments, "get_experiment", lambda name: Staged)
    return Staged


def test_backend_and_address_reach_an_experiment_with_a_backend_field(staged, tmp_path):
    assert main(["run", "staged", "--out", str(tmp_path), "--no-progress", "--backend", "ray",
                 "--ray-address", "ray://head:10001"]) == 0
    assert main(["run", "staged", "--out", str(tmp_path), "--no-progress"]) == 0
    assert [(c.backend, c.ray_address) for c in staged.seen] == [("ray", "ray://head:10001"), ("sequential", None)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "routing", "--backend", "ray"], "experiment 'routing' has no training-plan stages to run"),
        (["run", "routing", "--backend", "dask"],
         "backend must be one of 'sequential', 'processes', 'ray', got 'dask'"),
        (["run", "routing", "--ray-address", "auto"], "--ray-address needs --backend ray"),
    ],
)
def test_a_backend_for_an_experiment_without_stages_is_one_line_and_exit_code_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("modnets: error: ") and message in err
