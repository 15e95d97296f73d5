import json

from modnets.experiments import get_experiment
from modnets.train import FitConfig


def test_nmn_experiment_smoke(tmp_path):
    exp = get_experiment("nmn")
    config = exp.Config(quick=True, image_size=32, n_train=128, max_test_depth=7, n_test_per_depth=8,
                        hidden=16, fit=FitConfig(epochs=1, batch_size=32))
    report = exp.run(config, tmp_path, progress=False)
    path = report.write(tmp_path)
    text = path.read_text()
    assert "typed" in text and "untyped" in text and "Error by program depth" in text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["accuracy_by_depth"]) == {"typed", "untyped"}
    assert set(metrics["accuracy_by_depth"]["typed"]) == {str(d) for d in range(2, 8)}
    assert (tmp_path / "error_by_depth.png").stat().st_size > 1000
    assert any((tmp_path / "tensorboard" / "typed").glob("events.out.tfevents.*"))
    assert (tmp_path / "tensorboard" / "typed" / "scalars.jsonl").read_text().strip()
