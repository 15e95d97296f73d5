import json

import pytest

from modnets.cli import main
from modnets.hub import Hub
from modnets.models import nmn


@pytest.fixture(scope="module")
def stocked(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "hub"
    hub = Hub(root)
    model = nmn(True, image_size=32, hidden=8)
    hub.save(model.stem, "clevr-stem", seed=0, data="CLEVR-like, exist questions")
    hub.save(model.library["find"], "clevr-find", metrics={"accuracy": 0.875}, parents=["clevr-stem@1"])
    hub.save(model.library["relate"], "clevr-relate")
    hub.save(model.library["count"], "clevr-count")
    return root


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_prints_a_table_and_json(capsys, stocked):
    code, out, _ = run(capsys, "hub", "list", "--hub", str(stocked))
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["entry", "class", "signature", "created", "(UTC)", "metrics"]
    assert [line.split()[0] for line in lines[2:]] == ["clevr-count@1", "clevr-find@1", "clevr-relate@1",
                                                      "clevr-stem@1"]
    assert "(features: FeatureMap(66)) -> Mask" in out and "accuracy=0.875" in out
    code, out, _ = run(capsys, "hub", "list", "clevr-find", "--hub", str(stocked), "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == ["clevr-find"] and rows[0]["metrics"] == {"accuracy": 0.875}


def test_search_by_signature(capsys, stocked):
    def refs(*args):
        code, out, err = run(capsys, "hub", "search", "--hub", str(stocked), "--json", *args)
        assert code == 0, err
        return [r["name"] for r in json.loads(out)]

    assert refs("--input", "Mask", "--output", "Mask") == ["clevr-relate"]
    assert refs("--no-inputs", "--output", "Mask") == ["clevr-find"]
    assert refs("--input", "Image(3)") == ["clevr-stem"]
    assert refs("--output", "Probs(26)") == ["clevr-count"]
    assert refs("--context", "features=FeatureMap(66)", "--input", "Mask") == ["clevr-count", "clevr-relate"]
    assert refs("--context", "features=FeatureMap(12)", "--input", "Mask") == ["clevr-count"]
    assert refs("--output", "Logits(26)") == []
    code, out, _ = run(capsys, "hub", "search", "--hub", str(stocked), "--output", "Logits")
    assert code == 0 and out.strip() == "no matching modules"


def test_show_prints_the_manifest(capsys, stocked):
    code, out, _ = run(capsys, "hub", "show", "clevr-find@1", "--hub", str(stocked))
    assert code == 0
    assert "entry:       clevr-find@1" in out and "class:       modnets.models.Find" in out
    assert "parents:     clevr-stem@1" in out and "sha256" in out
    code, out, _ = run(capsys, "hub", "show", "clevr-stem", "--hub", str(stocked), "--json")
    manifest = json.loads(out)
    assert code == 0 and manifest["class"] == "modnets.modules.CNNStem"
    assert manifest["provenance"]["data"] == "CLEVR-like, exist questions"


def test_the_hub_option_defaults_to_the_environment(capsys, stocked, monkeypatch):
    monkeypatch.setenv("MODNETS_HUB", str(stocked))
    code, out, _ = run(capsys, "hub", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 4


def test_verify_and_remove(capsys, tmp_path):
    root = str(tmp_path / "hub")
    hub = Hub(root)
    model = nmn(True, image_size=32, hidden=8)
    hub.save(model.stem, "stem")
    hub.save(model.stem, "stem")
    code, out, _ = run(capsys, "hub", "verify", "--hub", root)
    assert code == 0 and "checked 2 entries" in out and "all fine" in out
    weights = tmp_path / "hub" / "modules" / "stem" / "2" / "module.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, out, _ = run(capsys, "hub", "verify", "--hub", root)
    assert code == 1 and "1 problems" in out and "stem@2" in out and "truncated" in out
    code, out, _ = run(capsys, "hub", "verify", "--hub", root, "--json")
    result = json.loads(out)
    assert code == 1 and not result["ok"] and [p["ref"] for p in result["problems"]] == ["stem@2"]
    code, out, _ = run(capsys, "hub", "remove", "stem@2", "--hub", root)
    assert code == 0 and out.strip() == "removed stem@2"
    code, out, _ = run(capsys, "hub", "verify", "--hub", root, "--rebuild")
    assert code == 0 and "index rebuilt from 1 entry folders" in out
    code, out, _ = run(capsys, "hub", "remove", "stem", "--all", "--hub", root, "--json")
    assert code == 0 and json.loads(out) == ["stem@1"]
    code, out, _ = run(capsys, "hub", "list", "--hub", root)
    assert code == 0 and out.strip().startswith("no modules in the hub")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["hub", "show", "../../etc/passwd"], "invalid entry name '../../etc/passwd'"),
        (["hub", "show", "clevr-find@0"], "invalid version '0'"),
        (["hub", "show", "clevr-find@7"], "no entry clevr-find@7"),
        (["hub", "show", "nothing"], "no entry named 'nothing'"),
        (["hub", "remove", "clevr-find"], "give a version (clevr-find@N) or --all"),
        (["hub", "remove", "clevr-find@1", "--all"], "not both"),
        (["hub", "search", "--output", "Nope"], "unknown data type 'Nope'; allowed types: Bounded"),
        (["hub", "search", "--input", "Mask(", "--output", "Mask"], "invalid data type 'Mask('"),
        (["hub", "search", "--context", "features"], "invalid --context 'features'"),
        (["hub", "search", "--input", "Mask", "--no-inputs"], "not both"),
        (["hub", "list", "Bad Name"], "invalid entry name 'Bad Name'"),
        (["hub", "frobnicate"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, stocked, argv, message):
    code, out, err = run(capsys, *argv, "--hub", str(stocked))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("modnets: error: ") and message in err, err
    assert "Traceback" not in out + err
    assert len(Hub(stocked).entries()) == 4  # nothing was changed
