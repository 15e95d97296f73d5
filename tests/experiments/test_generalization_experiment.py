import json

import pytest

from modnets import with_overrides
from modnets.errors import ConfigError
from modnets.experiments import get_experiment

TINY = ["compositions.data.n_train=300", "compositions.data.n_test=100", "compositions.fit.epochs=1",
        "vqa.n_train=60", "vqa.n_test=30", "vqa.fit.epochs=1",
        "scan.train.seconds=2", "scan.train.train_limit=64", "scan.train.eval_limit=16", "scan.train.hidden=16"]


def test_generalization_experiment_smoke(tmp_path):
    """The quick preset with tiny data and one epoch (about 20 s): every split x model has in-distribution and
    held-out accuracy, the routed methods their held-out AMI per layer, and the report says where modularity
    helped; SCAN's quick models (GRU and executor, add-jump only) sit beside the published numbers."""
    exp = get_experiment("generalization")
    report = exp.run(with_overrides(exp.Config.for_mode(True), TINY), tmp_path, progress=False)
    text = report.write(tmp_path).read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["compositions"]) == set(exp.Config().methods)
    for name in ("cogent", "closure"):
        assert set(metrics[name]) == {*exp.VQA_MODELS, "majority"}
    assert set(metrics["scan/addprim_jump"]) == {"gru", "executor"}
    assert not any(k.startswith("scan/") and k != "scan/addprim_jump" for k in metrics)
    for name in ("compositions", "cogent", "closure", "scan/addprim_jump"):
        for model, m in metrics[name].items():
            for key in ("in_distribution", "held_out"):
                assert m[key]["n"] == 1 and 0.0 <= m[key]["mean"] <= 1.0, (name, model, key)
            assert ("ami_held_out" in m) == (name == "compositions" and model != "dense")
    for model, m in metrics["scan/addprim_jump"].items():
        assert m["steps"]["mean"] >= 1 and m["n_held_out"]["mean"] == 16 and m["train_seconds"]["mean"] < 10, model
    assert len(metrics["compositions"]["em"]["ami_held_out"]) == 2
    verdict = text.split("**compositions**, held-out")[1].split("\n")[0]
    for method in metrics["compositions"]:  # the verdict judges every routed method against the dense network
        assert exp.MODEL_LABELS[method] in verdict, method
    for phrase in ("**compositions**, held-out", "**cogent**, held-out", "**closure**, held-out", "answer prior",
                   "do unseen combinations reuse the right modules", "75.6 %", "**scan/addprim_jump**, held-out",
                   "on tiny budgets", "trained every model for 100,000 steps", "seq2seq, best: 1.2 %",
                   "Not run here (quick mode): models Transformer seq2seq; splits simple, length"):
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
    assert [k for k in report.metrics if k.startswith("scan/")] == ["scan/addprim_jump"]
    assert "| scan/addprim_jump | modular executor (given parse) |" in report.to_markdown()


def test_scan_models_and_splits_come_from_the_config(tmp_path):
    exp = get_experiment("generalization")
    config = with_overrides(exp.Config.for_mode(True), [*TINY, "splits=[\"scan\"]", "scan.models=[\"transformer\"]",
                                                        "scan.splits=[\"simple\", \"addprim_turn_left\"]"])
    report = exp.run(config, tmp_path, progress=False)
    assert set(report.metrics) >= {"scan/simple", "scan/addprim_turn_left"}
    assert all(set(report.metrics[k]) == {"transformer"} for k in ("scan/simple", "scan/addprim_turn_left"))
    text = report.to_markdown()
    assert "99.8 %" in text and "about 90 %" in text  # the published numbers of both splits
    full = exp.Config.for_mode(False)
    assert full.scan.models == exp.SCAN_KINDS
    assert full.scan.splits == ("simple", "addprim_jump", "length", "addprim_turn_left")
    assert full.seeds == 3 and full.scan.train.seconds == 300


@pytest.mark.parametrize(("field", "value"), [("splits", ("compositions", "gqa")), ("methods", ()),
                                              ("models", ("mac",))])
def test_config_rejects_unknown_names(field, value):
    exp = get_experiment("generalization")
    with pytest.raises(ConfigError, match=field):
        exp.Config(**{field: value})


@pytest.mark.parametrize(("field", "value"), [("models", ("lstm",)), ("splits", ("mcd1",)), ("splits", ())])
def test_scan_part_rejects_unknown_names(field, value):
    exp = get_experiment("generalization")
    with pytest.raises(ConfigError, match=f"ScanPart.{field}"):
        exp.ScanPart(**{field: value})


def test_router_input_is_checked():
    exp = get_experiment("generalization")
    with pytest.raises(ConfigError, match="router_input"):
        exp.CompositionsPart(router_input="tasks")
