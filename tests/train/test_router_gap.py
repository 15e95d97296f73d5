"""The router gap: the task loss under the routes an objective trains on vs under the router's own routes, and
the warning when the routing carries label information the router cannot predict from x."""

import dataclasses
import warnings

import pytest
import torch

from modnets.errors import ConfigError
from modnets.routing import MLPExperts, ModularLayer, ModularStack, Router
from modnets.train import (
    Reinforce,
    ReinforceConfig,
    RouterGapWarning,
    TopKBufferConfig,
    categorical_log_likelihood,
    generalized_em,
)
from modnets.train._routing_objective import GAP_WARMUP, RouterGap


def classes(informative: bool, n=256, seed=0):
    """4 classes; the inputs say which (informative) or nothing about it (a planted label leak for EM)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randn(n, 4, generator=g)
    if informative:
        x = 0.1 * x + 2 * torch.eye(4)[y]
    return x, y


def classifier(seed=0):
    """4 modules, each able to output any class; a dynamic router that sees x."""
    torch.manual_seed(seed)
    return ModularStack(layers=[ModularLayer(modules=MLPExperts(n_modules=4, d_in=4, d_hidden=16, d_out=4),
                                             router=Router(n_modules=4, d_in=4))])


def train(objective, x, y, steps=100, lr=3e-2):
    """Adam on random batches of 64; returns the RouterGapWarnings given and the last step's terms."""
    opt = torch.optim.Adam(objective.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(steps):
            i = torch.randperm(len(y), generator=g)[:64]
            terms = objective.loss({"x": x[i], "y": y[i], "index": i})
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
    return [w for w in caught if issubclass(w.category, RouterGapWarning)], terms


@pytest.mark.parametrize("seed", [0, 1])
def test_em_warns_once_when_each_class_is_routed_to_its_own_module_by_the_e_step(seed):
    # the E-step sees y: it routes each class to the module that predicts it, which the router cannot
    # reproduce from inputs that carry no information about the class
    em = generalized_em(classifier(seed), dataset_size=256, config=TopKBufferConfig.em(samples=4))
    caught, terms = train(em, *classes(informative=False, seed=seed))
    assert len(caught) == 1
    assert "carry information about y that the router cannot predict from x" in str(caught[0].message)
    assert float(terms["nll_trained"]) < 0.8 < 2.0 < float(terms["nll_router"])
    assert float(terms["router_gap"]) == pytest.approx(float(terms["nll_router"] - terms["nll_trained"]))


@pytest.mark.parametrize("seed", [0, 1])
def test_em_does_not_warn_when_the_router_sees_what_determines_the_route(seed):
    em = generalized_em(classifier(seed), dataset_size=256, config=TopKBufferConfig.em(samples=4))
    caught, terms = train(em, *classes(informative=True, seed=seed))
    assert caught == []
    assert abs(float(terms["router_gap"])) < 0.05 and float(terms["nll_router"]) < 0.05


def test_reinforce_routes_never_see_y_and_do_not_warn_on_the_planted_leak():
    caught, terms = train(Reinforce(classifier(), ReinforceConfig(samples=2)), *classes(informative=False))
    assert caught == [] and float(terms["router_gap"]) < 0.3


def test_gap_warning_none_never_warns():
    config = dataclasses.replace(TopKBufferConfig.em(samples=4), gap_warning=None)
    caught, terms = train(generalized_em(classifier(), dataset_size=256, config=config), *classes(False))
    assert caught == [] and float(terms["router_gap"]) > 1.0  # the gap is still logged


def test_the_gap_terms_are_the_losses_under_the_incumbents_and_under_the_argmax_routes():
    x, y = classes(informative=False, n=16)
    net = classifier()
    em = generalized_em(net, dataset_size=16, config=TopKBufferConfig.em(samples=3))
    torch.manual_seed(0)
    terms = em.loss({"x": x, "y": y, "index": torch.arange(16)})
    with torch.no_grad():
        incumbent = net(x, em.buffer.choice[:16, 0])
        argmax = net(x, mode="argmax")
    torch.testing.assert_close(terms["nll_trained"], -categorical_log_likelihood(incumbent.output, y).mean())
    torch.testing.assert_close(terms["nll_router"], -categorical_log_likelihood(argmax.output, y).mean())
    assert not terms["router_gap"].requires_grad


def test_the_warning_criterion_is_relative_waits_for_the_warm_up_and_fires_once():
    def feed(gap, trained, router, steps):
        return [gap.observe(torch.tensor(trained), torch.tensor(router), step=s, owner="X")
                for s in range(1, steps + 1)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feed(RouterGap(0.5), trained=20.0, router=30.0, steps=100)  # a third of a large loss: no
        feed(RouterGap(0.5), trained=0.0, router=0.4, steps=100)  # under 1 nat, the floor is 0.5 nats: no
        feed(RouterGap(0.5), trained=0.1, router=3.0, steps=GAP_WARMUP - 1)  # not before the warm-up
        assert caught == []
        feed(RouterGap(0.5), trained=0.1, router=3.0, steps=GAP_WARMUP + 10)
    assert len(caught) == 1 and caught[0].category is RouterGapWarning
    assert "(on average 3 nats) is 2.9 nats above" in str(caught[0].message)


@pytest.mark.parametrize("value", [0, -1.0, True, "big"])
def test_a_bad_gap_warning_raises_config_error(value):
    with pytest.raises(ConfigError, match="TopKBufferConfig.gap_warning"):
        TopKBufferConfig(gap_warning=value)
    with pytest.raises(ConfigError, match="ReinforceConfig.gap_warning"):
        ReinforceConfig(gap_warning=value)
