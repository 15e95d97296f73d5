import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modnets.analysis import pareto_front, plot_pareto_selection, select_near_pareto
from modnets.errors import ConfigError, ShapeError


def _naive_front(loss, var):
    n = len(loss)
    return [not any(loss[j] <= loss[i] and var[j] <= var[i] and (loss[j] < loss[i] or var[j] < var[i])
                    for j in range(n)) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=12))
def test_front_equals_the_naive_definition(points):
    loss, var = [float(p[0]) for p in points], [float(p[1]) for p in points]
    assert pareto_front(loss, var).tolist() == _naive_front(loss, var)


def test_selection_takes_the_front_then_the_nearest():
    loss = [1.0, 2.0, 3.0, 2.5, 3.0, 1.2]
    var = [3.0, 1.0, 0.5, 2.0, 3.0, 3.1]
    s = select_near_pareto(loss, var, k=5)
    assert s.front.tolist() == [True, True, True, False, False, False]
    assert s.selected[:3] == (0, 1, 2) and set(s.selected[3:]) == {3, 5}
    assert torch.all(s.distance[s.front] == 0)
    assert select_near_pareto(loss, var).selected == (0, 1, 2)  # tolerance 0: the front only
    wide = select_near_pareto(loss, var, tolerance=float(s.distance[3]))
    assert 3 in wide.selected and 4 not in wide.selected


def test_bad_input():
    with pytest.raises(ShapeError, match="two \\(n,\\) sequences"):
        pareto_front([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match="k must be an int in 1..2"):
        select_near_pareto([1.0, 2.0], [1.0, 2.0], k=3)


def test_plot_writes_a_png(tmp_path):
    loss, var = [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]
    path = plot_pareto_selection(loss, var, select_near_pareto(loss, var), tmp_path / "pareto.png")
    assert path.exists() and path.stat().st_size > 1000
