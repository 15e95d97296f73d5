"""ModularLayer: routing, soft mixtures, given routes, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modnets.errors import ConfigError, ShapeError
from modnets.routing import (
    LayerOutput,
    LinearExperts,
    MLPExperts,
    ModularLayer,
    Router,
    RouteResult,
    dispatch_naive,
)


def _layer(mode="sample", k=1, aggregate="sum", n_modules=4, d=8) -> ModularLayer:
    return ModularLayer(
        modules=MLPExperts(n_modules=n_modules, d_in=d, d_hidden=12, d_out=d),
        router=Router(n_modules=n_modules, d_in=d, mode=mode, k=k),
        k=k,
        aggregate=aggregate,
    )


@pytest.mark.parametrize("mode", ["sample", "argmax", "topk", "gumbel"])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("aggregate", ["sum", "concat"])
def test_output_is_the_dispatch_of_the_route_used(mode, k, aggregate):
    layer = _layer(mode, k, aggregate)
    x = torch.randn(10, 8)
    out = layer(x)
    assert isinstance(out, LayerOutput)
    assert out.output.shape == (10, 8 * (k if aggregate == "concat" else 1))
    weights = None if out.route.weights is None else out.route.weights[:, 0]
    want = dispatch_naive(x, out.route.choice[:, 0], layer.experts, weights=weights, aggregate=aggregate)
    torch.testing.assert_close(out.output, want, atol=1e-5, rtol=1e-4)


def test_soft_routing_is_the_probability_weighted_sum_of_all_modules():
    layer = _layer("soft", n_modules=3)
    x = torch.randn(6, 8)
    out = layer(x)
    probs = out.route.probs[:, 0]  # (B, M)
    fns = layer.experts.expert_fns()
    want = sum(probs[:, m : m + 1] * fns[m](x) for m in range(3))
    torch.testing.assert_close(out.output, want, atol=1e-5, rtol=1e-4)
    out.output.sum().backward()
    assert layer.router.nets[0].weight.grad.abs().sum() > 0  # soft routing is differentiable


def test_soft_concat_orders_modules_by_the_route():
    layer = _layer("soft", n_modules=3, aggregate="concat")
    x = torch.randn(4, 8)
    out = layer(x)
    fns = layer.experts.expert_fns()
    probs = out.route.probs[:, 0]
    want = torch.cat([probs[:, m : m + 1] * fns[m](x) for m in range(3)], dim=1)
    torch.testing.assert_close(out.output, want, atol=1e-5, rtol=1e-4)


def test_given_route_is_used_as_is_and_given_choice_is_scored():
    layer = _layer("sample", n_modules=4)
    x = torch.randn(5, 8)
    choice = torch.tensor([[3], [2], [1], [0], [3]])
    route = RouteResult(choice[:, None], torch.zeros(5), torch.full((5, 1, 4), 0.25))
    out = layer(x, route)
    assert out.route is route
    torch.testing.assert_close(out.output, dispatch_naive(x, choice, layer.experts), atol=1e-5, rtol=1e-4)
    scored = layer(x, choice)
    assert torch.equal(scored.route.choice[:, 0], choice)
    want = torch.log_softmax(layer.router.layer_logits(x), -1).gather(-1, choice)[:, 0]
    torch.testing.assert_close(scored.route.log_prob, want)
    torch.testing.assert_close(scored.output, out.output)


def test_log_prob_carries_a_gradient_to_the_router_for_reinforce():
    layer = _layer("sample", k=2)
    out = layer(torch.randn(16, 8), generator=torch.Generator().manual_seed(1))
    (-out.route.log_prob.mean()).backward()
    assert layer.router.nets[0].weight.grad.abs().sum() > 0


def test_gumbel_layer_trains_modules_and_router():
    layer = _layer("gumbel", n_modules=3)
    out = layer(torch.randn(12, 8))
    out.output.pow(2).sum().backward()
    assert layer.router.nets[0].weight.grad.abs().sum() > 0
    assert layer.experts.w1.grad.abs().sum() > 0


def test_static_router_per_task_and_plain_module_list():
    mods = nn.ModuleList([nn.Linear(8, 3) for _ in range(3)])
    layer = ModularLayer(modules=mods, router=Router(n_modules=3, static=True, n_tasks=2, mode="argmax"))
    out = layer(torch.randn(4, 8), task=torch.tensor([0, 1, 0, 1]))
    assert out.output.shape == (4, 3)


def test_state_dict_round_trip_gives_identical_outputs():
    a, b = _layer("argmax"), _layer("argmax")
    b.load_state_dict(a.state_dict())
    x = torch.randn(7, 8)
    torch.testing.assert_close(a(x).output, b(x).output)


def test_bad_construction_raises_config_error():
    def bank():
        return LinearExperts(n_modules=4, d_in=8, d_out=8)

    with pytest.raises(ConfigError, match=r"k=5.*M=4|M=4.*k=5"):
        ModularLayer(modules=bank(), router=Router(n_modules=4, d_in=8, mode="soft"), k=5)
    with pytest.raises(ConfigError, match="router.k=1"):
        ModularLayer(modules=bank(), router=Router(n_modules=4, d_in=8), k=2)
    with pytest.raises(ConfigError, match="n_modules=3"):
        ModularLayer(modules=bank(), router=Router(n_modules=3, d_in=8))
    with pytest.raises(ConfigError, match="aggregate"):
        ModularLayer(modules=bank(), router=Router(n_modules=4, d_in=8), aggregate="max")


def test_bad_input_raises_shape_error_naming_expected_and_received():
    layer = _layer()
    with pytest.raises(ShapeError, match=r"d_in=8.*\(3, 5\)"):
        layer(torch.randn(3, 5))
    bad = RouteResult(torch.zeros(3, 2, 1, dtype=torch.long), torch.zeros(3), torch.zeros(3, 2, 4))
    with pytest.raises(ShapeError, match=r"\(batch=3, 1, k\).*\(3, 2, 1\)"):
        layer(torch.randn(3, 8), bad)
    with pytest.raises(ConfigError, match="n_modules=4"):
        layer(torch.randn(3, 8), torch.full((3, 1), 4))


@pytest.mark.parametrize(("mode", "k", "gate"), [("sample", 1, None), ("gumbel", 1, None), ("soft", 1, None),
                                                 ("topk", 2, "softmax_topk")])
def test_torch_compile_traces_every_mode_at_two_batch_sizes(mode, k, gate):
    """Dynamic shapes through dynamo and AOT autograd (the ``aot_eager`` backend: no C++ build in the test)."""
    torch.manual_seed(0)
    layer = ModularLayer(modules=MLPExperts(n_modules=4, d_in=8, d_hidden=16, d_out=8),
                         router=Router(n_modules=4, d_in=8, mode=mode, k=k, gate=gate), k=k)
    compiled = torch.compile(lambda x: layer(x).output, backend="aot_eager", dynamic=True)
    for batch in (16, 37):
        x = torch.randn(batch, 8)
        out = compiled(x)
        assert out.shape == (batch, 8) and bool(torch.isfinite(out).all())
    out.sum().backward()
    assert next(layer.experts.parameters()).grad is not None
