import pytest
import torch

from modnets.analysis import recovery_scores
from modnets.errors import ShapeError


def _truth(n=2000, layers=2, components=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, components, (n, layers), generator=g)


def test_a_routing_identical_to_the_structure_scores_one_even_under_renamed_modules():
    truth = _truth()
    renamed = torch.tensor([2, 0, 3, 1])[truth]  # module ids are arbitrary: only the partition counts
    for choice in (truth, renamed, renamed[:, :, None]):  # (N, L) or a route's (N, L, 1)
        r = recovery_scores(truth, choice)
        assert r.ami == pytest.approx((1.0, 1.0)) and r.purity == (1.0, 1.0) and r.coverage == (1.0, 1.0)
        assert r.mean_ami == pytest.approx(1.0)


def test_a_shuffled_routing_scores_about_zero_ami():
    truth = _truth()
    g = torch.Generator().manual_seed(1)
    shuffled = torch.stack([truth[torch.randperm(truth.shape[0], generator=g), i] for i in range(2)], dim=1)
    r = recovery_scores(truth, shuffled)
    assert all(abs(a) < 0.02 for a in r.ami)
    assert all(p < 0.5 for p in r.purity)  # about 1/4: each module serves all four components alike


def test_layers_are_scored_separately():
    truth = _truth()
    choice = torch.stack([truth[:, 0], torch.zeros_like(truth[:, 1])], dim=1)  # layer 1: everything to module 0
    r = recovery_scores(truth, choice)
    assert r.ami[0] == pytest.approx(1.0) and r.ami[1] == pytest.approx(0.0, abs=1e-9)
    assert r.coverage[1] == 1.0 and r.purity[1] < 0.5  # one module for all: full coverage, low purity
    assert r.mean_ami == pytest.approx(0.5)


def test_an_over_split_routing_is_pure_but_not_a_recovery():
    truth = _truth(layers=1)
    split = 2 * truth + torch.arange(truth.shape[0])[:, None] % 2  # every component split over two modules
    r = recovery_scores(truth, split)
    assert r.purity == (1.0,) and r.coverage[0] < 0.6 and r.ami[0] < 0.9


@pytest.mark.parametrize(
    ("truth", "choice", "message"),
    [
        (torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 2, 2, dtype=torch.long), "k = 1"),
        (torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 3, dtype=torch.long), r"both be \(N, L\)"),
        (torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, 2, dtype=torch.long), "N > 0"),
    ],
)
def test_bad_shapes_are_refused(truth, choice, message):
    with pytest.raises(ShapeError, match=message):
        recovery_scores(truth, choice)
