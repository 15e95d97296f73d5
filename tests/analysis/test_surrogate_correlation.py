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
