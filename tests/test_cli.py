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
    page = (tmp_path / "report.html").read_text()
    assert all(f'href="{name}/report.html"' in page for name in EXPERIMENTS)


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


# ------------------------------------------------------------------------------------- --config and --set
TINY_ROUTING = ['methods=["em"]', "fit.epochs=1", "fit.batch_size=64", "compositions.data.n_train=256",
                "compositions.data.n_test=64", "compositions.d_hidden=8", "images.n_train=256", "images.n_test=64",
                "images.d_model=16", "images.d_hidden=16", "images.n_modules=4"]


class Recorded:
    """The routing experiment with a ``run`` that only records the config it is given."""

    seen: list = []

    @staticmethod
    def run(config, out, progress=True, resume=False):
        from modnets.experiments import Report

        Recorded.seen.append(config)
        return Report(name="routing", title="recorded", summary="", headline="| done |", config=config)


@pytest.fixture
def recorded(monkeypatch):
    import modnets.experiments

    real = modnets.experiments.get_experiment
    Recorded.Config = real("routing").Config
    Recorded.seen = []
    monkeypatch.setattr(modnets.experiments, "get_experiment", lambda name: Recorded)
    return Recorded


def _sets(overrides):
    return [a for item in overrides for a in ("--set", item)]


def test_set_and_config_reach_the_experiment_and_metrics_json_reruns_it(tmp_path, capsys, monkeypatch):
    import modnets.experiments

    first = tmp_path / "first"
    assert main(["run", "routing", "--quick", "--no-progress", "--out", str(first), *_sets(TINY_ROUTING)]) == 0
    saved = json.loads((first / "metrics.json").read_text())["config"]
    assert saved["methods"] == ["em"] and saved["quick"] is True
    assert saved["compositions"]["fit"]["epochs"] == saved["images"]["fit"]["epochs"] == 1
    assert saved["compositions"]["data"]["n_train"] == 256 and saved["images"]["n_modules"] == 4
    assert json.loads((first / "metrics.json").read_text())["compositions"]["em"]["steps"] == 4  # 256 / 64

    routing = modnets.experiments.get_experiment("routing")
    Recorded.Config, Recorded.seen = routing.Config, []
    monkeypatch.setattr(modnets.experiments, "get_experiment", lambda name: Recorded)
    # without --quick: the file, not the preset, decides every field
    assert main(["run", "routing", "--no-progress", "--out", str(tmp_path / "again"),
                 "--config", str(first / "metrics.json")]) == 0
    assert Recorded.seen[-1] == routing.Config.from_dict(saved)
    assert Recorded.seen[-1].to_dict() == saved
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["config"] == saved


def test_the_preset_then_the_file_then_each_set(recorded, tmp_path):
    (tmp_path / "part.yaml").write_text("samples: 2\ncompositions:\n  fit:\n    lr: 1e-3\n    epochs: 5\n")
    assert main(["run", "routing", "--quick", "--seed", "3", "--no-progress", "--out", str(tmp_path / "run"),
                 "--config", str(tmp_path / "part.yaml"), "--set", "fit.epochs=2",
                 "--set", "compositions.fit.epochs=4"]) == 0
    config = recorded.seen[-1]
    preset = recorded.Config.for_mode(True, 3)
    assert config.quick is True and config.seed == 3 and config.samples == 2
    assert config.compositions.fit.lr == 1e-3 and config.compositions.fit.epochs == 4
    assert config.images.fit.epochs == 2 and config.images.fit.lr == preset.images.fit.lr
    assert config.compositions.data == preset.compositions.data


@pytest.mark.parametrize(
    ("args", "files", "fragment"),
    [
        (["--set", "fit.epoch=1"], {}, "'fit.epoch=1' matches no field of routing.Config; nearest: "),
        (["--set", "fit.epochs=ten"], {}, "routing.Config.compositions.fit.epochs must be an int, got 'ten'"),
        (["--set", "fit.lr=0"], {}, "FitConfig.lr must be > 0"),
        (["--set", "fit.epochs"], {}, "invalid override 'fit.epochs'; expected PATH=VALUE"),
        (["--config", "{tmp}/nowhere.json"], {}, "cannot read config file"),
        (["--config", "{tmp}/c.json"], {"c.json": '{"samples": 2,'}, "is not valid JSON"),
        (["--config", "{tmp}/c.yaml"], {"c.yaml": "samples: [2\n"}, "is not valid YAML"),
        (["--config", "{tmp}/c.json"], {"c.json": '{"sample": 2}'}, "unknown key 'sample' in routing.Config"),
        (["--config", "{tmp}/c.json"], {"c.json": '{"images": {"fit": {"epochs": "1"}}}'},
         "routing.Config.images.fit.epochs must be an int, got '1'"),
    ],
)
def test_bad_config_input_is_one_line_and_exit_code_2(recorded, tmp_path, capsys, args, files, fragment):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    code = main(["run", "routing", "--quick", "--out", str(tmp_path / "run"), *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and not recorded.seen
    assert err.startswith("modnets: error: ") and err.count("\n") == 1 and fragment in err, err
