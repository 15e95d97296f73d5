import math

import pytest
import torch

from modnets.analysis import routing_stats
from modnets.errors import ConfigError, ShapeError


def test_uniform_router_uses_everything_and_knows_nothing():
    s = routing_stats(torch.full((10, 1, 4), 0.25))
    assert s.entropy == pytest.approx(math.log(4))
    assert s.conditional_entropy == pytest.approx(math.log(4))
    assert s.mutual_information == pytest.approx(0.0, abs=1e-9)
    assert not s.collapsed


def test_confident_balanced_router_has_maximal_mutual_information():
    probs = torch.eye(4).repeat(3, 1).unsqueeze(1)  # 12 inputs, 3 per module, each sure of its module
    s = routing_stats(probs)
    assert s.conditional_entropy == pytest.approx(0.0, abs=1e-9)
    assert s.entropy == pytest.approx(math.log(4))
    assert s.mutual_information == pytest.approx(math.log(4))
    assert s.effective_modules.tolist() == pytest.approx([4.0])


def test_collapse_onto_one_module_is_flagged():
    probs = torch.zeros(8, 2, 4)
    probs[:, 0, 0] = 1.0  # layer 0 always module 0
    probs[:, 1] = torch.eye(4).repeat(2, 1)  # layer 1 balanced
    s = routing_stats(probs)
    assert s.collapsed and s.collapsed_layers == (0,)
    assert s.layer_entropy.tolist() == pytest.approx([0.0, math.log(4)], abs=1e-6)
    assert s.usage[0].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])


def test_hand_computed_two_input_case():
    # x1: p = (0.5, 0.5); x2: p = (1, 0). q = (0.75, 0.25).
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    s = routing_stats(probs)
    h_q = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    h_cond = 0.5 * math.log(2)
    assert s.entropy == pytest.approx(h_q)
    assert s.conditional_entropy == pytest.approx(h_cond)
    assert s.mutual_information == pytest.approx(h_q - h_cond)


def test_joint_entropy_over_layers_is_exact_and_below_the_sum_of_layers():
    # Two layers perfectly correlated across inputs: the joint uses 2 routings, each layer 2 modules.
    probs = torch.zeros(4, 2, 2)
    probs[:2, :, 0] = 1.0
    probs[2:, :, 1] = 1.0
    s = routing_stats(probs)
    assert s.joint_exact
    assert s.entropy == pytest.approx(math.log(2))
    assert s.layer_entropy.sum().item() == pytest.approx(2 * math.log(2))


def test_usage_from_choices_and_bad_input():
    probs = torch.full((4, 1, 3), 1 / 3)
    s = routing_stats(probs, choice=torch.tensor([[0], [0], [2], [0]]))
    assert s.usage[0].tolist() == pytest.approx([0.75, 0.0, 0.25])
    with pytest.raises(ShapeError, match="probability distributions"):
        routing_stats(torch.ones(4, 1, 3))
    with pytest.raises(ShapeError, match="choice must be"):
        routing_stats(probs, choice=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ShapeError, match="outside 0..2"):
        routing_stats(probs, choice=torch.full((4, 1), 5))
    with pytest.raises(ShapeError, match="batch, layers, modules"):
        routing_stats(torch.ones(3))
    with pytest.raises(ConfigError, match="collapse_fraction"):
        routing_stats(probs, collapse_fraction=2.0)
    assert set(s.scalars()) >= {"routing/H(A)", "routing/H(A|X)", "routing/I(A;X)", "routing/collapsed"}


def test_stats_of_probs_off_the_default_device():
    probs = torch.full((6, 2, 3), 1 / 3)
    with torch.device("meta"):  # the check that probs sum to 1 must compare on the device of probs
        s = routing_stats(probs)
    assert s.entropy == pytest.approx(2 * math.log(3))  # two independent layers
