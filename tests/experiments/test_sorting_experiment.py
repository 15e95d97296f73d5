import json

from modnets.experiments import get_experiment


def test_sorting_experiment_smoke(tmp_path):
    exp = get_experiment("sorting")
    config = exp.Config(quick=True, hidden=8, batch_size=8, max_train_length=3, max_test_length=5,
                        n_test_per_length=3, monolithic_seconds=None, module_seconds=None, max_steps=4, workers=2)
    report = exp.run(config, tmp_path, progress=False)
    text = report.write(tmp_path).read_text()
    assert "monolithic" in text and "modular, parallel" in text and "Against the thesis" in text
    assert "step limit" in text  # the runs stopped on their limit, and the report says so
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("train_seconds_monolithic", "train_seconds_modular_sequential", "train_seconds_modular_parallel",
                "speedup"):
        assert metrics[key] > 0
    assert metrics["speedup"] == metrics["train_seconds_monolithic"] / metrics["train_seconds_modular_sequential"]
    sequential = metrics["modular_sequential"]
    assert metrics["train_seconds_modular_sequential"] == sum(r["seconds"] for r in sequential.values())
    assert metrics["parallel_workers"] == 2 and metrics["parallel_start_method"] in ("fork", "spawn")
    assert set(metrics["accuracy_by_length"]) == {"monolithic", "modular"}
    assert set(metrics["accuracy_by_length"]["modular"]) == {str(n) for n in range(2, 6)}
    assert set(metrics["modular_sequential"]) == {"mova", "movb", "retb", "swap", "control"}
    assert metrics["monolithic"]["stopped_on_budget"] and not metrics["criterion_met"]["monolithic"]
    for figure in ("error_vs_time.png", "error_vs_steps.png", "gradients.png", "accuracy_by_length.png"):
        assert (tmp_path / figure).stat().st_size > 1000
    assert (tmp_path / "tensorboard" / "monolithic" / "scalars.jsonl").read_text().strip()
    assert (tmp_path / "tensorboard" / "modular" / "control" / "scalars.jsonl").read_text().strip()
    assert (tmp_path / "checkpoints" / "modular_parallel" / "control").is_dir()  # no checkpoints/.../checkpoints
