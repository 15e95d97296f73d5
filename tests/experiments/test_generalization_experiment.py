import json

import pytest

from modnets import with_overrides
from modnets.errors import ConfigError
from modnets.experiments import get_experiment

TINY = ["compositions.data.n_train=300", "compositions.data.n_test=100", "compositions.fit.epochs=1",
        "vqa.n_train=60", "vqa.n_test=30", "vqa.fit.epochs=1"]


def test_generalization_experiment_smoke(tmp_path):
    """The quick preset with tiny data and one epoch (about 10 s): every split x model has in-distribution and
    held-out accuracy, the routed methods their held-out AMI per layer, and the report says where modularity
    helped."""
    exp = get_experiment("generalization")
    report = exp.run(with_overrides(exp.Config.for_mode(True), TINY), tmp_path, progress=False)
    text = report.write(tmp_path).read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["compositions"]) == set(exp.METHODS)
    for name in ("cogent", "closure"):
        assert set(metrics[name]) == {*exp.VQA_MODELS, "majority"}
    for name in ("compositions", "cogent", "closure"):
        for model, m in metrics[name].items():
            for key in ("in_distribution", "held_out"):
                assert m[key]["n"] == 1 and 0.0 <= m[key]["mean"] <= 1.0, (name, model, key)
            assert ("ami_held_out" in m) == (name == "compositions" and model != "dense")
    assert len(metrics["compositions"]["em"]["ami_held_out"]) == 2
    for phrase in ("**compositions**, held-out", "**cogent**, held-out", "**closure**, held-out", "answer prior",
                   "do unseen combinations reuse the right modules", "75.6 %", "No SCAN model"):
        assert phrase in text, phrase
    assert metrics["config"]["seeds"] == 1


def test_task_id_routers_and_scan_alone_run(tmp_path):
    exp = get_experiment("generalization")
    config = with_overrides(exp.Config.for_mode(True), [*TINY, "splits=[\"compositions\", \"scan\"]",
                                                        "methods=[\"em\", \"dense\"]",
                                                        "compositions.router_input=\"task\""])
    report = exp.run(config, tmp_path, progress=False)
    assert set(report.metrics["compositions"]) == {"em", "dense"}
    assert "rows of held-out tasks are never trained" in report.to_markdown()
    assert "addprim_jump: seq2seq, best: 1.2 %" in report.to_markdown()


@pytest.mark.parametrize(("field", "value"), [("splits", ("compositions", "gqa")), ("methods", ()),
                                              ("models", ("mac",))])
def test_config_rejects_unknown_names(field, value):
    exp = get_experiment("generalization")
    with pytest.raises(ConfigError, match=field):
        exp.Config(**{field: value})


def test_router_input_is_checked():
    exp = get_experiment("generalization")
    with pytest.raises(ConfigError, match="router_input"):
        exp.CompositionsPart(router_input="tasks")
