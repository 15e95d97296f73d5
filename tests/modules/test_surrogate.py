import pytest
import torch
import torch.nn.functional as F

from modnets.errors import ConfigError, ShapeError
from modnets.modules import FeatureAttention, LowRankLinear, MaskReadout, SurrogateGradientModule


def test_low_rank_linear_shapes_rank_and_naive_equality():
    lin = LowRankLinear(40, 12, rank=3)
    assert lin.weight_a.shape == (40, 3) and lin.weight_b.shape == (3, 12) and lin.weight.shape == (40, 12)
    assert torch.linalg.matrix_rank(lin.weight.detach()) == 3
    x = torch.randn(5, 40)
    torch.testing.assert_close(lin(x), x @ lin.weight_a @ lin.weight_b + lin.bias)
    assert sum(p.numel() for p in lin.parameters()) == 40 * 3 + 3 * 12 + 12  # far below 40 * 12


@pytest.mark.parametrize("rank, message", [(12, "must be < min(d_in, d_out) = 12"), (0, "rank must be an int >= 1")])
def test_low_rank_linear_rejects_a_rank_that_is_not_low(rank, message):
    with pytest.raises(ConfigError, match=None) as info:
        LowRankLinear(40, 12, rank=rank)
    assert message in str(info.value)


def test_mask_readout_attends_or_passes_the_map_by_route():
    read = MaskReadout(6, (3, 4))
    mask, features = torch.rand(2, 3, 4), torch.randn(2, 6, 3, 4)
    out = read(mask, features=features, route=torch.tensor([0, 1]))
    assert out.shape == (2, 6 + 12) and read.d_out == 18
    torch.testing.assert_close(out[0, :6], FeatureAttention("odds")(features, mask)[0])
    assert out[0, 6:].abs().sum() == 0 and out[1, :6].abs().sum() == 0
    torch.testing.assert_close(out[1, 6:], mask[1].flatten())


def test_sgm_gradient_reaches_the_mask_through_both_readings():
    sgm = SurrogateGradientModule(readout=MaskReadout(6, (3, 4)), d_out=5, rank=2, dropout=0.0)
    mask = torch.rand(4, 3, 4, requires_grad=True)
    logits = sgm(mask, features=torch.randn(4, 6, 3, 4), route=torch.tensor([0, 1, 0, 1]))
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert (mask.grad.flatten(1).abs().sum(1) > 0).all()


def test_mc_dropout_variance_is_the_variance_of_the_predicted_class_over_samples():
    torch.manual_seed(1)
    sgm = SurrogateGradientModule(d_in=16, d_out=6, rank=4, dropout=0.5)
    sgm.eval()  # predictive keeps dropout on even in eval mode
    x = torch.randn(7, 16)
    pred = sgm.predictive(x, samples=50)
    assert pred.samples.shape == (50, 7, 6) and pred.probs.shape == (7, 6) and pred.variance.shape == (7,)
    torch.testing.assert_close(pred.probs, pred.samples.mean(0))
    chosen = pred.probs.argmax(1)
    naive = torch.stack([pred.samples[:, i, chosen[i]].var() for i in range(7)])
    torch.testing.assert_close(pred.variance, naive)
    assert (pred.variance > 0).all()
    assert torch.equal(sgm(x), sgm(x))  # plain forward in eval mode is deterministic


def test_without_dropout_the_predictive_variance_is_zero():
    sgm = SurrogateGradientModule(d_in=16, d_out=6, rank=4, dropout=0.0)
    pred = sgm.predictive(torch.randn(3, 16), samples=5)
    assert torch.allclose(pred.variance, torch.zeros(3))


def test_sgm_config_errors():
    with pytest.raises(ConfigError, match="must match the readout's d_out"):
        SurrogateGradientModule(readout=MaskReadout(6, (3, 4)), d_in=10, d_out=5, rank=2)
    with pytest.raises(ConfigError, match="dropout must be in"):
        SurrogateGradientModule(d_in=16, d_out=6, rank=2, dropout=1.0)
    with pytest.raises(ShapeError, match="takes \\(B, N\\) inputs"):
        SurrogateGradientModule(d_in=16, d_out=6, rank=2)(torch.randn(2, 4, 4))
