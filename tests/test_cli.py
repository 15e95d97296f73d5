import json

import pytest

from modnets.cli import main


def test_list_names_experiments_and_benchmarks(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "nmn" in out and "layouts" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "nope"], "unknown experiment 'nope'; known experiments: "),
        (["bench", "nope"], "unknown benchmark 'nope'; known benchmarks: layouts, dispatch, scaling"),
        (["run", "nmn", "--bogus"], "No such option: --bogus"),
        (["run"], "Missing argument"),
        (["run", "nmn", "--seed", "abc"], "Invalid value"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_usage_is_one_line_and_exit_code_2(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("modnets: error: ") and message in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_bench_prints_one_json_line_last(capsys):
    assert main(["bench", "em", "--json", "--quick"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["bench"] == "em" and result["ratio"] > 0
    assert set(result) == {"bench", "config", "results", "ratio", "ratio_is"}


@pytest.mark.slow
def test_reproduce_quick_writes_a_combined_report(tmp_path, capsys):
    assert main(["reproduce", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    report = (tmp_path / "report.md").read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    from modnets.experiments import EXPERIMENTS

    assert "NMN" in report and set(metrics) == set(EXPERIMENTS)
    for name in EXPERIMENTS:
        assert (tmp_path / name / "report.md").exists() and f"{name}/report.md" in report
    assert (tmp_path / "nmn" / "error_by_depth.png").exists()


def test_diverged_training_is_a_failure_with_one_line_and_exit_code_1(capsys, monkeypatch):
    import modnets.experiments
    from modnets.errors import NumericalError

    class Diverging:
        class Config:
            @staticmethod
            def for_mode(quick, seed):
                return None

        @staticmethod
        def run(config, out, progress=True, resume=False):
            raise NumericalError("step 7: loss term 'loss' of NMN is NaN", step=7, module="NMN", quantity="loss")

    monkeypatch.setattr(modnets.experiments, "get_experiment", lambda name: Diverging)
    assert main(["run", "nmn", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err == "modnets: error: step 7: loss term 'loss' of NMN is NaN\n"
