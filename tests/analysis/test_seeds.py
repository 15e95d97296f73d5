import math

import pytest

from modnets.analysis import Spread, plot_error_curves, plot_spreads, plot_training_curves, spread, spread_by
from modnets.errors import ConfigError


def test_spread_is_mean_and_sample_std_over_the_finite_values():
    s = spread([1.0, 2.0, 6.0, math.nan])
    assert s.n == 3 and s.mean == pytest.approx(3.0)
    assert s.std == pytest.approx(math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2))
    assert (s.low, s.high) == (1.0, 6.0) and len(s.values) == 4
    assert spread([4]).std == 0.0 and spread([]).format() == "n/a" and spread([math.nan]).n == 0


def test_spread_round_trips_through_its_dict():
    s = spread([0.5, 0.25])
    assert Spread.from_dict(s.to_dict()) == s
    assert s.format(percent=True, count=True) == "37.5 ± 17.7 % (2 seeds)"
    assert s.format("{:.2f}", unit=" s") == "0.38 ± 0.18 s"


def test_spread_refuses_what_is_not_a_number():
    with pytest.raises(ConfigError, match="real numbers"):
        spread([1.0, "2"])
    with pytest.raises(ConfigError, match="real numbers"):
        spread([True])


def test_spread_by_aligns_curves_and_counts_missing_keys_as_nan():
    curves = spread_by([{3: 0.5, 2: 1.0}, {2: 0.8}])
    assert list(curves) == [2, 3]
    assert curves[2].mean == pytest.approx(0.9) and curves[2].n == 2
    assert curves[3].n == 1 and math.isnan(curves[3].values[1])


def test_plots_of_spreads_write_images(tmp_path):
    values = {"a": spread([1.0, 2.0, 3.0]), "b": spread([10.0]), "none": spread([])}
    assert plot_spreads(values, tmp_path / "bars.png", ylabel="s", logy=True).stat().st_size > 1000
    curves = {"typed": spread_by([{2: 0.9, 3: 0.7}, {2: 0.8, 3: 0.6}]), "single": {2: 0.5, 3: 0.4}}
    assert plot_error_curves(curves, tmp_path / "curves.png").stat().st_size > 1000
    runs = {"two seeds": [[{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}], [{"step": 1, "loss": 0.9}]],
            "one run": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]}
    assert plot_training_curves(runs, tmp_path / "runs.png", x="step", y="loss").stat().st_size > 1000


def test_search_trials_are_drawn_one_panel_per_study(tmp_path):
    from modnets.analysis import plot_search_trials

    studies = {"find": [{"params": {"lr": 1e-3}, "value": 1.0}, {"params": {"lr": 1e-2}, "value": None}],
               "end to end": [{"params": {"lr": 3e-3}, "value": 0.5}]}
    assert plot_search_trials(studies, tmp_path / "s.png").stat().st_size > 1000
    with pytest.raises(ConfigError, match="at least one study"):
        plot_search_trials({}, tmp_path / "none.png")
