import json

import pytest

from modnets.errors import ConfigError
from modnets.experiments import get_experiment
from modnets.hub import Hub
from modnets.train import FitConfig


def tiny(exp, **overrides):
    settings = dict(quick=True, image_size=32, depths=(2, 3), n_source=96, n_target=64, n_test=48, hidden=16,
                    fit_source=FitConfig(epochs=1, batch_size=32), fit_target=FitConfig(epochs=1, batch_size=32))
    return exp.Config(**{**settings, **overrides})


def test_reuse_experiment_smoke(tmp_path):
    exp = get_experiment("reuse")
    hub_dir = tmp_path / "hub"
    report = exp.run(tiny(exp, hub_dir=str(hub_dir)), tmp_path / "run", progress=False)
    text = report.write(tmp_path / "run").read_text()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("accuracy_reused", "accuracy_scratch", "train_seconds_reused", "train_seconds_scratch"):
        assert isinstance(metrics[key], float) and metrics[key] >= 0, key
    # Only the new answer module learned in the reused arm.
    assert 0 < metrics["trainable_parameters_reused"] < metrics["trainable_parameters_scratch"] / 10
    assert metrics["steps_reused"] == metrics["steps_scratch"] == 2
    # The searches found exactly the stored stem, find and relate, and not the source answer module.
    assert metrics["hub"]["found"] == {"stem": ["clevr-stem@1"], "find": ["clevr-find@1"],
                                       "relate": ["clevr-relate@1"]}
    assert metrics["hub"]["used"] == {"stem": "clevr-stem@1", "find": "clevr-find@1", "relate": "clevr-relate@1"}
    assert sorted(metrics["hub"]["stored"]) == ["clevr-describe@1", "clevr-find@1", "clevr-relate@1",
                                                "clevr-stem@1"]
    assert Hub(hub_dir).verify().ok
    manifest = Hub(hub_dir).manifest("clevr-find")
    assert manifest.provenance.parents == ("clevr-stem@1",)
    assert manifest.provenance.data["family"] == "describe"
    assert "reused" in text and "from scratch" in text and "Finding the modules by signature" in text
    assert (tmp_path / "run" / "error_by_depth.png").stat().st_size > 1000


def test_reuse_with_a_temporary_hub_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    exp = get_experiment("reuse")
    report = exp.run(tiny(exp, source_family="count", target_family="describe"), tmp_path / "run", progress=False)
    assert report.metrics["hub"]["found"]["relate"] == ["clevr-relate@1"]
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"source_family": "exist", "target_family": "exist"}, "must differ"),
        ({"target_family": "colour"}, "target_family must be one of"),
        ({"n_target": 0}, "n_target must be an int >= 1"),
        ({"depths": (1, 2)}, "depths must be"),
    ],
)
def test_bad_configs_are_refused(overrides, message):
    exp = get_experiment("reuse")
    with pytest.raises(ConfigError, match=message):
        tiny(exp, **overrides)
