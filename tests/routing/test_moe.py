"""MoE: a gated layer in nn.Sequential learns a mixture of tasks by backprop; its auxiliary losses; errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from modnets.errors import ConfigError, ShapeError
from modnets.routing import (
    LinearExperts,
    MLPExperts,
    ModularLayer,
    MoE,
    MoEOutput,
    Router,
    RouteResult,
    dispatch_naive,
    router_z_loss,
    routing_stats,
    switch_balance_loss,
)


def _moe(gate="softmax_topk", k=2, n=4, d=6, **kwargs) -> MoE:
    return MoE(
        experts=MLPExperts(n_modules=n, d_in=d, d_hidden=8, d_out=d),
        router=Router(n_modules=n, d_in=d, mode="topk", k=k, gate=gate),
        **kwargs,
    )


def _route(choice: list[list[int]], probs: torch.Tensor) -> RouteResult:
    c = torch.tensor(choice)[:, None]  # (B, 1, k)
    return RouteResult(c, torch.zeros(c.shape[0]), probs[:, None])


# ---------------------------------------------------------------------------------------------- layer
@pytest.mark.parametrize("gate", ["softmax_topk", "topk_softmax", "sigmoid"])
def test_output_is_the_gate_weighted_sum_of_the_chosen_experts(gate):
    moe = _moe(gate)
    x = torch.randn(9, 6)
    out = moe(x, return_route=True)
    assert isinstance(out, MoEOutput) and out.output.shape == (9, 6)
    want = dispatch_naive(x, out.route.choice[:, 0], moe.experts, weights=out.route.weights[:, 0])
    torch.testing.assert_close(out.output, want, atol=1e-5, rtol=1e-4)
    assert torch.equal(moe(x), out.output)  # plain tensor by default


def test_top1_switch_gate_scales_the_output_by_the_probability_and_trains_the_router():
    moe = _moe(k=1)
    x = torch.randn(12, 6)
    out = moe(x, return_route=True)
    probs = out.route.probs[:, 0].gather(-1, out.route.choice[:, 0])  # (B, 1)
    unweighted = dispatch_naive(x, out.route.choice[:, 0], moe.experts)
    torch.testing.assert_close(out.output, probs * unweighted, atol=1e-5, rtol=1e-4)
    out.output.pow(2).sum().backward()
    assert moe.router.nets[0].weight.grad.abs().sum() > 0


def test_shared_experts_see_every_row_and_tokens_keep_their_shape():
    shared = nn.Linear(6, 6)
    moe = _moe(shared_experts=shared)
    x = torch.randn(3, 5, 6)  # (B, T, d)
    out = moe(x, return_route=True)
    assert out.output.shape == (3, 5, 6) and out.route.choice.shape == (15, 1, 2)
    routed = dispatch_naive(x.reshape(15, 6), out.route.choice[:, 0], moe.experts, weights=out.route.weights[:, 0])
    torch.testing.assert_close(out.output, routed.view(3, 5, 6) + shared(x), atol=1e-5, rtol=1e-4)


def test_task_ids_repeat_over_tokens():
    moe = MoE(
        experts=LinearExperts(n_modules=3, d_in=4, d_out=4),
        router=Router(n_modules=3, static=True, n_tasks=2, mode="argmax", gate="softmax_topk"),
    )
    with torch.no_grad():
        moe.router.logits[0, 0] = torch.tensor([5.0, 0.0, 0.0])
        moe.router.logits[1, 0] = torch.tensor([0.0, 0.0, 5.0])
    out = moe(torch.randn(2, 3, 4), task=torch.tensor([0, 1]), return_route=True)
    assert out.route.choice[:, 0, 0].tolist() == [0, 0, 0, 2, 2, 2]
    with pytest.raises(ShapeError, match=r"task.*batch=2"):
        moe(torch.randn(2, 3, 4), task=torch.tensor([0, 1, 1]))


# ---------------------------------------------------------------------------------------------- learning
def test_sequential_moe_learns_a_mixture_of_linear_tasks_and_routes_by_input():
    gen = torch.Generator().manual_seed(0)
    n_clusters, d_in, d_out = 4, 8, 3
    centres = 3.0 * torch.randn(n_clusters, d_in, generator=gen)
    maps = torch.randn(n_clusters, d_in, d_out, generator=gen)

    def batch(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = torch.randint(0, n_clusters, (size,), generator=gen)
        x = centres[c] + 0.5 * torch.randn(size, d_in, generator=gen)
        return x, torch.einsum("bi,bio->bo", x, maps[c]), c

    torch.manual_seed(0)
    moe = MoE(
        experts=LinearExperts(n_modules=4, d_in=16, d_out=16),  # one expert cannot fit two clusters' maps
        router=Router(n_modules=4, d_in=16, mode="topk", k=1, gate="softmax_topk"),
        balance_coef=0.01,
        z_coef=0.001,
    )
    net = nn.Sequential(nn.Linear(d_in, 16), moe, nn.Linear(16, d_out))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x_test, y_test, _ = batch(512)
    with torch.no_grad():
        before = nn.functional.mse_loss(net(x_test), y_test).item()
        info_before = routing_stats(moe.last_route.probs).mutual_information
    for _ in range(400):
        x, y, _ = batch(128)
        loss = nn.functional.mse_loss(net(x), y) + sum(moe.aux_losses().values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = nn.functional.mse_loss(net(x_test), y_test).item()
        route = moe.last_route
    assert after < 0.05 * before, (before, after)
    info_after = routing_stats(route.probs).mutual_information  # log 4 = 1.39 nats at most
    assert info_after > 0.3 and info_after > info_before + 0.2, (info_before, info_after)


# ---------------------------------------------------------------------------------------------- aux losses
def test_balance_loss_is_one_for_uniform_routing_and_grows_when_routing_collapses():
    uniform = _route([[0], [1], [2], [3]], torch.full((4, 4), 0.25))
    assert switch_balance_loss(uniform).item() == pytest.approx(1.0)
    top2 = _route([[0, 1], [2, 3], [0, 2], [1, 3]], torch.full((4, 4), 0.25))
    assert switch_balance_loss(top2).item() == pytest.approx(1.0)
    sure = torch.eye(4) * 0.96 + 0.01  # each row sure of its own expert: balanced
    assert switch_balance_loss(_route([[0], [1], [2], [3]], sure)).item() == pytest.approx(1.0)
    half = _route([[0], [0], [1], [1]], torch.tensor([[0.5, 0.5, 0.0, 0.0]]).expand(4, 4))
    assert switch_balance_loss(half).item() == pytest.approx(2.0)
    collapsed = _route([[0]] * 4, torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(4, 4))
    assert switch_balance_loss(collapsed).item() == pytest.approx(4.0)


def test_balance_loss_matches_its_formula_with_a_gradient_to_the_probabilities():
    logits = torch.randn(10, 5, requires_grad=True)
    probs = torch.softmax(logits, -1)
    choice = probs.detach().topk(2, dim=-1).indices
    loss = switch_balance_loss(RouteResult(choice[:, None], torch.zeros(10), probs[:, None]))
    f = torch.bincount(choice.flatten(), minlength=5).float() / 20
    assert loss.item() == pytest.approx(5 * (f * probs.mean(0)).sum().item(), rel=1e-5)
    loss.backward()
    assert logits.grad.abs().sum() > 0


def test_z_loss_is_the_mean_squared_logsumexp_of_the_logits():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # logsumexp: log 2, log 4
    route = RouteResult(
        torch.zeros(2, 1, 1, dtype=torch.long),
        torch.zeros(2),
        torch.softmax(logits, -1)[:, None],
        logits=logits[:, None],
    )
    assert router_z_loss(route).item() == pytest.approx((math.log(2) ** 2 + math.log(4) ** 2) / 2)
    with pytest.raises(ConfigError, match="logits"):
        router_z_loss(route._replace(logits=None))


def test_aux_losses_are_weighted_named_and_read_the_last_route():
    moe = _moe(balance_coef=0.5, z_coef=0.25)
    with pytest.raises(ConfigError, match="forward"):
        moe.aux_losses()
    out = moe(torch.randn(8, 6), return_route=True)
    assert moe.last_route is out.route
    terms = moe.aux_losses()
    assert set(terms) == {"loss_balance", "loss_z"} == set(out.losses)
    assert terms["loss_balance"].item() == pytest.approx(0.5 * switch_balance_loss(out.route).item())
    assert terms["loss_z"].item() == pytest.approx(0.25 * router_z_loss(out.route).item())
    sum(terms.values()).backward()
    assert moe.router.nets[0].weight.grad.abs().sum() > 0
    assert set(_moe(z_coef=0.0).aux_losses(out.route)) == {"loss_balance"}


# ---------------------------------------------------------------------------------------------- eval, trace, errors
def test_a_sampling_moe_routes_deterministically_in_eval_mode():
    moe = MoE(
        experts=LinearExperts(n_modules=6, d_in=4, d_out=4),
        router=Router(n_modules=6, d_in=4, mode="sample", k=2, gate="softmax_topk"),
    )
    x = torch.randn(64, 4)
    assert not torch.equal(moe(x), moe(x))
    moe.eval()
    torch.testing.assert_close(moe(x), moe(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_jit_trace_of_routed_modules_raises_config_error():
    x = torch.randn(4, 6)
    moe = _moe()
    layer = ModularLayer(modules=LinearExperts(n_modules=4, d_in=6, d_out=6), router=Router(n_modules=4, d_in=6))
    for module, name in ((moe, "MoE"), (nn.Sequential(moe, nn.ReLU()), "MoE"), (layer, "ModularLayer")):
        with pytest.raises(ConfigError, match=f"{name} cannot be traced"):
            torch.jit.trace(module, x, check_trace=False)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"router": Router(n_modules=4, d_in=6, mode="topk", k=2)}, ["gate", "mode='topk'"]),
        ({"router": nn.Linear(6, 4)}, ["router", "Linear"]),
        ({"router": Router(n_modules=4, d_in=6, n_layers=2, mode="soft")}, ["n_layers", "2"]),
        ({"balance_coef": -1.0}, ["balance_coef=-1.0"]),
        ({"z_coef": "big"}, ["z_coef='big'"]),
        ({"shared_experts": "mlp"}, ["shared_experts", "str"]),
        ({"k": 3}, ["k=3", "router.k=2"]),
    ],
)
def test_bad_construction_raises_config_error_naming_the_argument(kwargs, words):
    args = {
        "experts": LinearExperts(n_modules=4, d_in=6, d_out=6),
        "router": Router(n_modules=4, d_in=6, mode="topk", k=2, gate="softmax_topk"),
        **kwargs,
    }
    with pytest.raises(ConfigError) as info:
        MoE(**args)
    for word in words:
        assert word in str(info.value)


def test_soft_and_gumbel_routers_are_accepted():
    bank = LinearExperts(n_modules=3, d_in=4, d_out=2)
    assert MoE(experts=bank, router=Router(n_modules=3, d_in=4, mode="soft"))(torch.randn(5, 4)).shape == (5, 2)
    assert MoE(experts=bank, router=Router(n_modules=3, d_in=4, mode="gumbel"))(torch.randn(5, 4)).shape == (5, 2)
