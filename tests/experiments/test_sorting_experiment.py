import json

import pytest

from modnets.analysis import Spread
from modnets.errors import ConfigError
from modnets.experiments import get_experiment


def test_sorting_experiment_smoke(tmp_path):
    exp = get_experiment("sorting")
    config = exp.Config(quick=True, seeds=2, hidden=8, batch_size=8, max_train_length=3, max_test_length=5,
                        n_test_per_length=3, monolithic_seconds=None, module_seconds=None, max_steps=4, workers=2)
    report = exp.run(config, tmp_path, progress=False)
    text = report.write(tmp_path).read_text()
    assert "monolithic" in text and "modular, parallel" in text and "Against the thesis" in text
    assert "step limit" in text  # the runs stopped on their limit, and the report says so
    assert "2 seeds: 0, 1" in text and "Mean ± standard deviation over the seeds" in text
    assert "Departures from the thesis" in text
    assert "Controller trained by reward (thesis 5.3)" in text and "by reward (shaped)" in text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1] and len(metrics["per_seed"]) == 2
    for seed in metrics["per_seed"]:
        for key in ("train_seconds_monolithic", "train_seconds_modular_sequential", "train_seconds_modular_parallel",
                    "speedup"):
            assert seed[key] > 0
        assert seed["speedup"] == seed["train_seconds_monolithic"] / seed["train_seconds_modular_sequential"]
        modules = seed["modular_sequential"].values()
        assert seed["train_seconds_modular_sequential"] == sum(r["seconds"] for r in modules)
        assert seed["parallel_workers"] == 2 and seed["parallel_start_method"] in ("fork", "spawn")
        assert set(seed["accuracy_by_length"]) == {"monolithic", "modular", "reward_terminal", "reward_shaped",
                                                   "reward_terminal+buffer"}
        for arm in ("terminal", "shaped", "terminal+buffer"):  # every controller trained by reward: the same limit
            assert seed["reward"][arm]["steps"] == 4 and seed["reward"][arm]["stop_reason"] == "step limit"
        assert set(seed["accuracy_by_length"]["modular"]) == {str(n) for n in range(2, 6)}
        assert set(seed["modular_sequential"]) == {"mova", "movb", "retb", "swap", "control"}
        assert seed["monolithic"]["stopped_on_budget"] and not seed["criterion_met"]["monolithic"]
    # the aggregates are the mean and spread of the per-seed values
    speedups = [s["speedup"] for s in metrics["per_seed"]]
    assert metrics["speedup"]["values"] == speedups
    assert metrics["speedup"]["mean"] == pytest.approx(sum(speedups) / 2)
    assert Spread.from_dict(metrics["speedup"]).n == 2
    assert metrics["criterion_met"]["monolithic"] == 0
    assert set(metrics["modules"]) == {"mova", "movb", "retb", "swap", "control"}
    shares = sum(m["share_of_modular_seconds"]["mean"] for m in metrics["modules"].values())
    assert shares == pytest.approx(1.0)
    for figure in ("convergence_times.png", "error_vs_time.png", "error_vs_steps.png", "gradients.png",
                   "module_loss.png", "accuracy_by_length.png", "reward_training.png"):
        assert (tmp_path / figure).stat().st_size > 1000
    assert (tmp_path / "tensorboard" / "seed0" / "monolithic" / "scalars.jsonl").read_text().strip()
    assert (tmp_path / "tensorboard" / "seed1" / "modular" / "control" / "scalars.jsonl").read_text().strip()
    assert (tmp_path / "checkpoints" / "seed0" / "modular_parallel" / "control").is_dir()
    assert (tmp_path / "tensorboard" / "seed1" / "reward" / "control_shaped" / "scalars.jsonl").read_text().strip()
    assert (tmp_path / "tensorboard" / "seed0" / "reward" / "control_terminal_buffer" / "scalars.jsonl").read_text()
    assert "by reward (terminal+buffer)" in text and "best episodes replayed" in text
    assert set(metrics["reward"]) == {"terminal", "shaped", "terminal+buffer"}
    assert metrics["reward"]["shaped"]["steps"]["mean"] == 4


def test_sorting_config_refuses_zero_seeds():
    with pytest.raises(ConfigError, match="seeds"):
        get_experiment("sorting").Config(seeds=0)



@pytest.mark.parametrize("arms", [("sorted",), ("terminal", "terminal"), ("buffer",)])
def test_sorting_config_refuses_unknown_or_repeated_reward_arms(arms):
    with pytest.raises(ConfigError, match="reward_arms"):
        get_experiment("sorting").Config(reward_arms=arms)


def test_sorting_config_without_reward_arms_round_trips():
    config = get_experiment("sorting").Config.for_mode(True)
    assert config.reward_arms == ("terminal", "shaped", "terminal+buffer") and config.reward_seconds == 25.0
    exp = get_experiment("sorting")
    assert exp.Config.from_dict({**config.to_dict(), "reward_arms": []}).reward_arms == ()
