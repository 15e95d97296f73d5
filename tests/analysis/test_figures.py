import matplotlib
import pytest
import torch
from matplotlib.image import imread

from modnets.analysis import (
    plot_error_curves,
    plot_identity_images,
    plot_pareto_selection,
    plot_routing_curves,
    plot_surrogate_correlation,
    plot_training_curves,
    plot_usage_curves,
    select_near_pareto,
)

ROWS = [{"step": s, "seconds": 0.1 * s, "error": 1 / (s + 1), "loss": 2 / (s + 1), "usage_0": 0.25 * (s % 4),
         "usage_1": 1 - 0.25 * (s % 4), "H(A)": 0.5, "H(A|X)": 0.1, "I(A;X)": 0.4} for s in range(1, 9)]
LOSSES, VARIANCES = [1.0, 2.0, 3.0, 2.5, 3.5], [3.0, 1.0, 0.5, 2.0, 3.0]

PLOTS = {
    "training_curves": lambda path: plot_training_curves({"a": ROWS, "b": ROWS[::2]}, path, smooth=2),
    "identity_images": lambda path: plot_identity_images(torch.rand(3, 3, 8, 8), path, titles=["x", "y", "z"]),
    "usage_curves": lambda path: plot_usage_curves({"run": ROWS}, path),
    "surrogate_correlation": lambda path: plot_surrogate_correlation(LOSSES, VARIANCES, path, colors=[1, 2, 3, 4, 5]),
    "error_curves": lambda path: plot_error_curves({"m": {1: 0.9, 2: 0.7, 3: 0.5}}, path, trained_up_to=2),
    "routing_curves": lambda path: plot_routing_curves({"em": ROWS}, path, title="routing"),
    "pareto_selection": lambda path: plot_pareto_selection(LOSSES, VARIANCES, select_near_pareto(LOSSES, VARIANCES,
                                                                                                 k=3), path),
}


@pytest.fixture
def user_backend():
    """A backend other than Agg chosen by 'the user'; the test's own choice is undone afterwards."""
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    yield "svg"
    matplotlib.use(before)


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_a_plot_writes_a_png_and_leaves_the_users_backend_alone(tmp_path, user_backend, name):
    path = tmp_path / "figures" / f"{name}.png"  # the folder does not exist yet
    PLOTS[name](path)
    assert matplotlib.get_backend() == user_backend
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0  # something was drawn
