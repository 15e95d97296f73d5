import json

import pytest

from modnets.errors import ConfigError
from modnets.experiments import EXPERIMENTS, get_experiment
from modnets.train import FitConfig, ProgramSearchConfig


def tiny(exp, **overrides):
    fit = FitConfig(epochs=1, batch_size=16)
    settings = dict(quick=True, seeds=1, libraries=("typed",), image_size=16, depths=(2, 3), n_train=48, n_test=24,
                    hidden=8, stem_channels=(8,), policy_hidden=16, gold_fraction=0.25,
                    search=ProgramSearchConfig(buffer_size=1, samples=2),
                    fit_gold=fit, fit_clone=fit, fit_search=fit, refit=fit)
    return exp.Config(**{**settings, **overrides})


def test_layouts_experiment_smoke(tmp_path):
    assert "layouts" in EXPERIMENTS
    exp = get_experiment("layouts")
    report = exp.run(tiny(exp), tmp_path / "run", progress=False)
    text = report.write(tmp_path / "run").read_text()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["seeds"] == [0]
    seed = metrics["per_seed"][0]
    arms = seed["libraries"]["typed"]
    assert set(seed["libraries"]) == {"typed"} and set(arms) == {"gold", "answers", "cloned"}
    for name, arm in arms.items():
        for key in ("accuracy", "exact_match", "execution_equivalent", "entropy", "ms_per_step"):
            assert isinstance(arm[key], float) and arm[key] >= 0, key
        assert 0 <= arm["exact_match"] <= 1 and 0 <= arm["execution_equivalent"] <= 1
        assert set(arm["accuracy_by_depth"]) <= {"2", "3"}
        assert metrics["accuracy"]["typed"][name]["values"] == [arm["accuracy"]]
    assert arms["gold"]["exact_match"] == 1.0 and arms["answers"]["steps"] == 3  # 48 questions, batches of 16
    assert arms["cloned"]["clone"]["steps"] == 1 and seed["n_gold"] == 12
    assert arms["cloned"]["refit"]["steps"] == 3 and 0 <= arms["cloned"]["search"]["accuracy"] <= 1
    assert metrics["cloned_search_accuracy"]["typed"]["values"] == [arms["cloned"]["search"]["accuracy"]]
    assert seed["max_size"] == seed["gold_max_size"] >= 2
    assert metrics["config"]["search"]["buffer_size"] == 1
    if arms["gold"]["accuracy"] > 0:
        assert metrics["share_of_gold"]["typed"]["cloned"]["mean"] == pytest.approx(
            arms["cloned"]["accuracy"] / arms["gold"]["accuracy"])
    assert (tmp_path / "run" / "accuracy_by_depth.png").stat().st_size > 1000
    for words in ("gold programs", "learned from answers alone", "cloned from gold", "exact match",
                  "execution-equivalent", "H(A|X)", "Against the papers", "share of gold", "Accuracy by program depth",
                  "modules refitted on its programs"):
        assert words in text


def test_typed_and_untyped_libraries_over_two_seeds(tmp_path):
    exp = get_experiment("layouts")
    cloned = ProgramSearchConfig.em(samples=2, score="joint")
    report = exp.run(tiny(exp, seeds=2, libraries=("typed", "untyped"), cloned_search=cloned), tmp_path,
                     progress=False)
    text = report.write(tmp_path).read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1] and [s["seed"] for s in metrics["per_seed"]] == [0, 1]
    for lib in ("typed", "untyped"):
        for arm in ("gold", "answers", "cloned"):
            assert metrics["accuracy"][lib][arm]["n"] == 2
    assert "Typed vs untyped modules" in text and "generalised EM (joint score)" in text
    assert metrics["config"]["cloned_search"]["buffer_size"] == 1


def test_without_refit_the_cloned_arm_answers_with_the_search_modules(tmp_path):
    exp = get_experiment("layouts")
    report = exp.run(tiny(exp, refit=None), tmp_path, progress=False)
    cloned = report.metrics["per_seed"][0]["libraries"]["typed"]["cloned"]
    assert "refit" not in cloned and "search" not in cloned and "cloned_search_accuracy" not in report.metrics
    assert "modules refitted" not in report.write(tmp_path).read_text()


def test_with_programs_replaces_each_question_program():
    exp = get_experiment("layouts")
    from modnets.compose import Program

    data = exp.seed_data(tiny(exp), 0).test
    programs = [Program.parse("count(find[red])")] * len(data)
    replaced = exp._WithPrograms(data, programs)
    assert len(replaced) == len(data) and replaced[3]["program"] == programs[3]
    assert replaced[3]["answer"] == data[3]["answer"]


def test_a_program_the_oracle_cannot_answer_counts_as_not_equivalent():
    exp = get_experiment("layouts")
    from modnets.compose import Program
    from modnets.data import Scene

    scene = Scene.from_objects([{"color": "red", "shape": "cube", "size": "small", "x": 0.2, "y": 0.5},
                                {"color": "red", "shape": "sphere", "size": "large", "x": 0.7, "y": 0.5}])
    assert exp._oracle(Program.parse("describe[shape](find[red])"), scene) is None  # two red objects
    assert exp._oracle(Program.parse("count(find[red])"), scene) == "2"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"gold_fraction": 0.0}, "gold_fraction must be in"),
        ({"depths": (1,)}, "depths must be"),
        ({"image_size": 20, "stem_channels": (8, 8, 8)}, "image_size must be"),
        ({"max_size": 0}, "max_size must be an int >= 1"),
        ({"libraries": ("typed", "typed")}, "libraries must be"),
        ({"libraries": ("film",)}, "libraries must be"),
        ({"seeds": 0}, "seeds must be"),
    ],
)
def test_bad_settings_are_refused(overrides, message):
    exp = get_experiment("layouts")
    with pytest.raises(ConfigError, match=message):
        tiny(exp, **overrides)


def test_presets_round_trip_through_json():
    exp = get_experiment("layouts")
    for quick in (True, False):
        config = exp.Config.for_mode(quick, seed=3)
        assert exp.Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config
