"""The config base: JSON round trips of every config, checked reconstruction, overrides and config files."""

import json
from dataclasses import dataclass, field

import pytest

from modnets import Config, read_config_file, with_overrides, with_values
from modnets.data import ClevrLikeConfig, CompositionConfig, Shapes3DConfig
from modnets.errors import ConfigError
from modnets.experiments import EXPERIMENTS, get_experiment, read_run_config
from modnets.train import (
    AgentTrainingConfig,
    Criterion,
    EndToEndConfig,
    FitConfig,
    NMNModulewiseConfig,
    ReinforceConfig,
    RoutingRegularizers,
    SearchConfig,
    TopKBufferConfig,
    WinnerTakeAllConfig,
)


def _experiment_classes():
    routing = get_experiment("routing")
    return [get_experiment(name).Config for name in EXPERIMENTS] + [routing.CompositionPart, routing.ImagePart]


LIBRARY_CONFIGS = [FitConfig, EndToEndConfig, TopKBufferConfig, SearchConfig, ReinforceConfig, NMNModulewiseConfig,
                   WinnerTakeAllConfig, AgentTrainingConfig, Criterion, RoutingRegularizers, CompositionConfig,
                   Shapes3DConfig, ClevrLikeConfig]


def _through_json(config):
    return json.loads(json.dumps(config.to_dict()))


@pytest.mark.parametrize("cls", LIBRARY_CONFIGS + _experiment_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_config_round_trips_through_json(cls):
    assert issubclass(cls, Config)
    config = cls()
    assert cls.from_dict(_through_json(config)) == config


@pytest.mark.parametrize("name", list(EXPERIMENTS))
@pytest.mark.parametrize("quick", [True, False])
def test_every_experiment_preset_round_trips_through_json(name, quick):
    cls = get_experiment(name).Config
    config = cls.for_mode(quick, 3)
    again = cls.from_dict(_through_json(config))
    assert again == config and again.to_dict() == config.to_dict()


def test_to_dict_gives_json_values_and_from_dict_rebuilds_nested_configs():
    routing = get_experiment("routing")
    data = routing.Config.for_mode(True).to_dict()
    assert isinstance(data["methods"], list) and isinstance(data["compositions"]["fit"], dict)
    again = routing.Config.from_dict(data)
    assert isinstance(again.methods, tuple) and isinstance(again.compositions.fit, FitConfig)
    assert isinstance(again.compositions.data, CompositionConfig)
    # ints where floats are expected; keys left out keep their defaults
    partial = routing.Config.from_dict({"compositions": {"sigma": 1, "fit": {"lr": 1}}})
    assert partial.compositions.sigma == 1.0 and isinstance(partial.compositions.sigma, float)
    assert partial.compositions.fit == FitConfig(lr=1.0)
    assert partial.images == routing.ImagePart()
    # None where the field allows it
    assert FitConfig.from_dict({"grad_clip": None}).grad_clip is None
    sorting = get_experiment("sorting").Config.from_dict({"workers": 2, "criterion": {"patience": None}})
    assert sorting.workers == 2 and sorting.criterion == Criterion(patience=None)


@pytest.mark.parametrize(
    ("cls", "data", "fragments"),
    [
        (FitConfig, {"epoch": 3},
         ["'epoch'", "FitConfig", "did you mean 'epochs'", "accepted keys: epochs, batch_size"]),
        (ClevrLikeConfig, {"colour": 1}, ["'colour'", "ClevrLikeConfig", "n_examples"]),
        (get_experiment("routing").Config, {"compositions": {"fit": {"lrr": 1}}},
         ["'lrr'", "routing.Config.compositions.fit", "FitConfig", "accepted keys"]),
    ],
)
def test_an_unknown_key_names_the_key_the_class_and_the_accepted_keys(cls, data, fragments):
    with pytest.raises(ConfigError) as caught:
        cls.from_dict(data)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (FitConfig, {"epochs": "ten"}, "FitConfig.epochs must be an int, got 'ten'"),
        (FitConfig, {"epochs": 2.5}, "FitConfig.epochs must be an int, got 2.5"),
        (FitConfig, {"epochs": True}, "FitConfig.epochs must be an int, got True"),
        (FitConfig, {"lr": "fast"}, "FitConfig.lr must be a number, got 'fast'"),
        (FitConfig, {"grad_clip": "none"}, "FitConfig.grad_clip must be a number or null, got 'none'"),
        (EndToEndConfig, {"anneal_tau": 1}, "EndToEndConfig.anneal_tau must be true or false, got 1"),
        (ClevrLikeConfig, {"depths": 3}, "ClevrLikeConfig.depths must be a list (items: an int), got 3"),
        (ClevrLikeConfig, {"depths": [2, "x"]}, "ClevrLikeConfig.depths[1] must be an int, got 'x'"),
        (get_experiment("imn").Config, {"fit": 3}, "imn.Config.fit must be a mapping of FitConfig fields, got 3"),
        (get_experiment("reuse").Config, {"fit_target": {"epochs": "1"}},
         "reuse.Config.fit_target.epochs must be an int, got '1'"),
        (FitConfig, ["epochs", 1], "FitConfig must be a mapping of FitConfig fields"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_field(cls, data, message):
    with pytest.raises(ConfigError) as caught:
        cls.from_dict(data)
    assert message in str(caught.value)


def test_from_dict_runs_the_configs_own_checks():
    with pytest.raises(ConfigError, match="FitConfig.lr must be > 0, got 0.0"):
        FitConfig.from_dict({"lr": 0})
    with pytest.raises(ConfigError, match="methods"):
        get_experiment("routing").Config.from_dict({"methods": ["em", "annealing"]})


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: ReinforceConfig(baseline="ema"), ["ReinforceConfig.baseline", "'ema'", "'moving_average'"]),
        (lambda: ReinforceConfig(baseline_decay=1.0), ["ReinforceConfig.baseline_decay", "1.0", "[0, 1)"]),
        (lambda: TopKBufferConfig(baseline="ema"), ["TopKBufferConfig.baseline", "'ema'", "'learned'"]),
        (lambda: TopKBufferConfig(baseline_decay=-0.1), ["TopKBufferConfig.baseline_decay", "-0.1"]),
        (lambda: EndToEndConfig(anneal_tau="yes"), ["EndToEndConfig.anneal_tau", "'yes'"]),
        (lambda: get_experiment("routing").CompositionPart(sigma=0.0), ["CompositionPart.sigma", "0.0"]),
        (lambda: get_experiment("routing").ImagePart(n_modules=0), ["ImagePart.n_modules", "0"]),
        (lambda: get_experiment("sorting").Config(workers=0), ["workers", "0"]),
    ],
)
def test_construction_validates(make, fragments):
    with pytest.raises(ConfigError) as caught:
        make()
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_overrides_parse_json_values_and_revalidate():
    config = with_overrides(FitConfig(), ["lr=1e-2", "epochs=3", "grad_clip=null", "on_nonfinite=skip"])
    assert config == FitConfig(lr=0.01, epochs=3, grad_clip=None, on_nonfinite="skip")
    assert with_overrides(FitConfig(), ['on_nonfinite="skip"']).on_nonfinite == "skip"
    reuse = get_experiment("reuse").Config
    changed = with_overrides(reuse(), ["depths=[2, 3]", 'fit_target={"epochs": 1}', "quick=true"])
    assert changed.depths == (2, 3) and changed.quick is True
    assert changed.fit_target == FitConfig(epochs=1, batch_size=64, lr=2e-3)  # a mapping changes only its keys
    with pytest.raises(ConfigError, match="FitConfig.lr must be > 0"):
        with_overrides(FitConfig(), ["lr=-1"])
    with pytest.raises(ConfigError, match=r"FitConfig.epochs must be an int, got 'ten'"):
        with_overrides(FitConfig(), ["epochs=ten"])


def test_a_path_not_rooted_at_a_top_level_field_sets_every_field_that_ends_with_it():
    routing = get_experiment("routing").Config
    config = routing.for_mode(True)
    changed = with_overrides(config, ["fit.epochs=1"])
    assert changed.compositions.fit.epochs == changed.images.fit.epochs == 1
    assert changed.compositions.fit.lr == config.compositions.fit.lr
    assert with_overrides(config, ["images.fit.epochs=2"]).compositions.fit == config.compositions.fit
    # a rooted path names one field: the seed of the run, not the seeds of its parts
    seeded = with_overrides(config, ["seed=5"])
    assert seeded.seed == 5 and seeded.compositions.data.seed == config.compositions.data.seed
    assert with_overrides(config, ["n_train=100"]).compositions.data.n_train == 100
    assert with_overrides(config, ["n_train=100"]).images.n_train == 100
    # nmn has a top-level fit: fit.epochs is that one, the module-wise fits keep theirs
    nmn = get_experiment("nmn").Config.for_mode(True)
    assert with_overrides(nmn, ["fit.epochs=1"]).modulewise == nmn.modulewise
    assert with_overrides(nmn, ["find.epochs=1"]).modulewise.find.epochs == 1


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("fit.epoch=1", ["'fit.epoch=1' matches no field of routing.Config", "nearest:", "compositions.fit.epochs",
                         "images.fit.epochs"]),
        ("compositions.fitt.lr=1", ["nearest:", "compositions.fit.lr"]),
        ("zzzz=1", ["valid paths: quick, seed, methods"]),
        ("fit.epochs", ["invalid override 'fit.epochs'; expected PATH=VALUE"]),
        ("=3", ["expected PATH=VALUE"]),
        ("fit..lr=3", ["expected PATH=VALUE"]),
    ],
)
def test_a_bad_override_says_what_is_accepted(override, fragments):
    with pytest.raises(ConfigError) as caught:
        with_overrides(get_experiment("routing").Config(), [override])
    assert len(str(caught.value).splitlines()) == 1
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_with_values_merges_a_partial_mapping():
    config = with_values(get_experiment("imn").Config.for_mode(True), {"fit": {"epochs": 1}, "n_test": 10})
    assert config.fit.epochs == 1 and config.fit.on_nonfinite == "skip" and config.n_test == 10
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        with_values(config, {"nope": 1})


def test_configs_subclass_and_nest():
    @dataclass
    class Inner(Config):
        size: int = 2

    @dataclass
    class Outer(Config):
        inner: Inner = field(default_factory=Inner)
        maybe: Inner | None = None
        pair: tuple[int, str] = (1, "a")

    outer = Outer(maybe=Inner(3))
    assert outer.to_dict() == {"inner": {"size": 2}, "maybe": {"size": 3}, "pair": [1, "a"]}
    assert Outer.from_dict(outer.to_dict()) == outer
    assert Outer.from_dict({"maybe": None}).maybe is None
    with pytest.raises(ConfigError, match=r"Outer.pair must be a list of 2 items \(an int, a string\)"):
        Outer.from_dict({"pair": [1, 2, 3]})


def test_config_files_json_yaml_and_metrics(tmp_path):
    (tmp_path / "a.json").write_text('{"fit": {"epochs": 1}}')
    (tmp_path / "a.yaml").write_text("fit:\n  epochs: 1\n  lr: 1e-3\n")
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "config": {"seed": 4}}))
    assert read_config_file(tmp_path / "a.json") == {"fit": {"epochs": 1}}
    assert read_config_file(tmp_path / "a.yaml") == {"fit": {"epochs": 1, "lr": 1e-3}}
    assert read_run_config(tmp_path / "metrics.json") == {"seed": 4}
    assert read_run_config(tmp_path / "a.json") == {"fit": {"epochs": 1}}


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("missing.json", None, "cannot read config file"),
        ("bad.json", "{fit: 1", "is not valid JSON: Expecting property name"),
        ("bad.yaml", "fit: [1\n", "is not valid YAML"),
        ("list.json", "[1, 2]", "must hold a mapping of config fields, got list"),
    ],
)
def test_a_bad_config_file_is_a_config_error(tmp_path, name, text, fragment):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        read_config_file(tmp_path / name)
