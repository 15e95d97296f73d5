import json

import pytest

from modnets.analysis import dependencies
from modnets.cli import main
from modnets.plan import Assembly, Loss, Merge, ModuleSpec


def test_analyze_nmn_prints_the_table_and_the_plan(capsys):
    assert main(["analyze", "nmn"]) == 0
    out = capsys.readouterr().out
    find = next(line for line in out.splitlines() if line.startswith("find "))
    assert find.split() == ["find", "x", "x"]  # decoupled input, indirect supervision
    assert "find: from the data, through an SGM to answer" in out
    assert "then cache find's outputs with targets answer for describe, exist, count" in out
    assert "describe: from the auxiliary data set of find" in out


def test_analyze_json_is_one_object_with_rows_and_stages(capsys):
    assert main(["analyze", "nmn-prior", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["modules"] for s in report["plan"]["stages"]] == [["encoder", "find"], ["describe", "exist", "count"]]
    assert {r["module"]: r["supervision"] for r in report["rows"]}["find"] == "indirect"


def test_analyze_markdown(capsys):
    assert main(["analyze", "figure-4.1", "--markdown"]) == 0
    assert "| B |  | ✓ |  | ✓ | with C in BC (product) |" in capsys.readouterr().out


def test_analyze_unknown_name_is_one_line_and_exit_code_2(capsys):
    assert main(["analyze", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == "modnets: error: unknown assembly 'nope'; known assemblies: nmn, nmn-prior, nmn-untyped-prior, " \
                  "nmn-combine, figure-4.1; or give FILE.json or package.module:attribute\n"


def _mine() -> Assembly:
    """A user's own assembly: an encoder feeding two heads whose product is scored."""
    return Assembly(
        sources=("x",),
        modules=(ModuleSpec("enc", ("x",)), ModuleSpec("left", ("enc",)), ModuleSpec("right", ("enc",))),
        merges=(Merge("both", ("left", "right"), "product"),),
        losses=(Loss("y", on="both"), Loss("z", on="enc")),
        name="mine",
    )


def test_analyze_a_json_file_prints_the_table_and_the_plan(capsys, tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(_mine().to_json())
    assert main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dependencies of mine (thesis 4.1)\n")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["enc"], ["left"])}
    assert rows["enc"] == ["enc", "x", "x"]  # decoupled input, direct supervision
    assert rows["left"][-3:] == ["right", "in", "both", "(product)"][-3:]  # a codependent gradient
    assert "\ntraining plan\n" in out and "stage 2: left, right" in out
    assert "left + right (trained jointly: codependent gradient)" in out
    assert main(["analyze", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(json.dumps(dependencies(_mine()).to_dict()))


def test_analyze_a_python_reference(capsys, tmp_path, monkeypatch):
    (tmp_path / "analyze_mine.py").write_text(
        "from modnets.plan import Assembly, Loss, ModuleSpec\n"
        "def build():\n"
        "    return Assembly(sources=('x',), modules=(ModuleSpec('enc', ('x',)),), losses=(Loss('y', on='enc'),),\n"
        "                    name='from-code')\n"
        "FIXED = build()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for reference in ("analyze_mine:build", "analyze_mine:FIXED"):
        assert main(["analyze", reference]) == 0
        out = capsys.readouterr().out
        assert out.startswith("dependencies of from-code (thesis 4.1)\n") and "training plan" in out


@pytest.mark.parametrize(
    "write, argument, message",
    [
        (None, "{tmp}/nowhere.json", "cannot read assembly file"),
        ('{"sources": ["x"], "modules": [', "{tmp}/bad.json", "bad.json is not valid JSON: Expecting value at line 1"),
        ('{"sources": ["x"], "modules": [{"name": "a", "inputs": ["y"]}]}', "{tmp}/bad.json",
         "bad.json: ModuleSpec 'a' reads unknown nodes ['y']; known: x, a"),
        ('{"sources": ["x"]}', "{tmp}/bad.json", "bad.json lacks the fields ['modules']"),
        (None, "no_such_module_here:assembly", "cannot import module 'no_such_module_here'"),
        (None, "json:nothing", "assembly reference 'json:nothing': 'json' has no attribute 'nothing'"),
        (None, "json:dumps", "is a function that needs arguments"),
        (None, "json:decoder", "gives a module, not a modnets.plan.Assembly"),
    ],
)
def test_a_bad_file_or_reference_is_one_line_and_exit_code_2(capsys, tmp_path, write, argument, message):
    if write is not None:
        (tmp_path / "bad.json").write_text(write)
    assert main(["analyze", argument.format(tmp=tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("modnets: error: ") and message in captured.err, captured.err
