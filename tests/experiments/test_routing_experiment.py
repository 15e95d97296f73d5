import json

import pytest

from modnets import with_overrides
from modnets.errors import ConfigError
from modnets.experiments import get_experiment


def test_routing_experiment_smoke(tmp_path):
    """The quick preset with fewer epochs (about 15 s): every method learns the images well above the majority
    class, and the two methods with a gradient through the routing beat chance on the compositions."""
    exp = get_experiment("routing")
    config = with_overrides(exp.Config.for_mode(True), ["compositions.fit.epochs=4", "images.fit.epochs=1"])
    report = exp.run(config, tmp_path, progress=False)
    text = report.write(tmp_path).read_text()
    assert "Compositions" in text and "Images" in text and "REINFORCE" in text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for part in ("compositions", "images"):
        assert set(metrics[part]) == set(exp.METHODS)
        for method, m in metrics[part].items():
            if method != "dense":
                assert len(m["modules_used"]) == 2 and m["mutual_information"] >= -1e-9
                assert ("recovery" in m) == (part == "compositions")
    # ten balanced classes: the majority class is about 10 % of the test images (after one epoch the gated MoE,
    # whose sigmoid gates scale each layer by about 1/2 at first, is the slowest, near 30 %)
    assert all(m["test_accuracy"] > 0.25 for m in metrics["images"].values()), metrics["images"]
    chance = metrics["chance_accuracy_compositions"]
    for method in ("soft", "dense"):
        assert metrics["compositions"][method]["test_accuracy"] > 3 * chance, (method, metrics["compositions"])
    assert "Fashion-MNIST" in metrics["image_source"] or "MNIST 5k" in metrics["image_source"]
    for name in ("routing_curves_compositions.png", "usage_images.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert (tmp_path / "tensorboard" / "compositions" / "em" / "scalars.jsonl").read_text().count("I(A;X)") > 0


def test_routing_config_rejects_unknown_methods():
    exp = get_experiment("routing")
    with pytest.raises(ConfigError, match="methods"):
        exp.Config(methods=("em", "annealing"))


@pytest.mark.slow
def test_quick_run_recovers_the_structure_better_than_chance(tmp_path):
    exp = get_experiment("routing")
    config = exp.Config.for_mode(quick=True)
    config.methods = ("em", "topk", "reinforce")
    metrics = exp.run(config, tmp_path, progress=False).metrics
    best = max(metrics["compositions"][m]["recovery"] for m in ("em", "topk"))
    assert best > 0.3  # AMI: 0 is chance
    assert max(metrics["compositions"][m]["test_accuracy"] for m in ("em", "topk")) > 3 * (1 / 16)
