import json

from modnets.cli import main


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
                  "nmn-combine, figure-4.1\n"
