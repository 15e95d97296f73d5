import math

import numpy as np
import pytest
from scipy import stats

from modnets.analysis import plot_surrogate_correlation, surrogate_correlation
from modnets.errors import ConfigError, ShapeError


def test_pearson_r_and_p_match_the_textbook_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=20)
    y = 0.8 * x + 0.3 * rng.normal(size=20)
    c = surrogate_correlation(x.tolist(), y.tolist())
    assert c.r == pytest.approx(np.corrcoef(x, y)[0, 1])
    t = c.r * math.sqrt((20 - 2) / (1 - c.r**2))
    assert c.p_value == pytest.approx(2 * stats.t.sf(abs(t), 18))
    assert c.n == 20


def test_constant_losses_give_nan_and_bad_input_is_refused():
    assert math.isnan(surrogate_correlation([1, 1, 1], [1, 2, 3]).r)
    with pytest.raises(ShapeError, match="one entry per module version"):
        surrogate_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ConfigError, match="at least 3"):
        surrogate_correlation([1, 2], [1, 2])
    with pytest.raises(ConfigError, match="finite"):
        surrogate_correlation([1, 2, float("nan")], [1, 2, 3])


def test_scatter_plot_is_written(tmp_path):
    path = plot_surrogate_correlation([1, 2, 3, 4], [1.1, 2.3, 2.9, 4.2], tmp_path / "s.png", colors=[1, 2, 1, 2])
    assert path.stat().st_size > 1000


def test_spearman_and_the_bootstrap_interval_of_r():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = 0.8 * x + 0.5 * rng.normal(size=40)
    c = surrogate_correlation(x.tolist(), y.tolist(), resamples=500, seed=3)
    assert c.spearman == pytest.approx(stats.spearmanr(x, y).statistic)
    assert c.r_low < c.r < c.r_high and c.r_high - c.r_low < 0.5
    # a monotone but non-linear relation: Spearman is 1, Pearson below
    m = surrogate_correlation([1, 2, 3, 4, 5], [1, 2, 4, 8, 100])
    assert m.spearman == pytest.approx(1.0) and m.r < 0.9
    # no linear relation (a parabola symmetric about the middle): r = 0 and the interval covers it
    xs = list(range(30))
    z = surrogate_correlation(xs, [(x - 14.5) ** 2 for x in xs], seed=1)
    assert abs(z.r) < 1e-9 and z.r_low < 0 < z.r_high
    with pytest.raises(ConfigError, match="resamples"):
        surrogate_correlation([1, 2, 3], [1, 2, 3], resamples=0)
