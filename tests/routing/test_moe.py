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
    ModuleListExperts,
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


# ---------------------------------------------------------------------------------------------- capacity
def _forced(logits: list[float], k: int, **kwargs) -> MoE:
    """An MoE whose static router sends every row to the same k experts (equal priorities: ties by row)."""
    n = len(logits)
    moe = MoE(
        experts=MLPExperts(n_modules=n, d_in=6, d_hidden=8, d_out=6),
        router=Router(n_modules=n, static=True, mode="topk", k=k, gate="softmax_topk"),
        **kwargs,
    )
    with torch.no_grad():
        moe.router.logits[0, 0] = torch.tensor(logits)
    return moe


def _counting_bank(n: int, d: int = 6) -> tuple[ModuleListExperts, list[int]]:
    """A bank of linear experts that records how many rows each expert ran on."""
    seen = [0] * n
    modules = [nn.Linear(d, d) for _ in range(n)]
    for e, module in enumerate(modules):
        module.register_forward_hook(lambda _m, args, _out, e=e: seen.__setitem__(e, seen[e] + args[0].shape[0]))
    return ModuleListExperts(modules=modules), seen


def _reference(moe: MoE, x: torch.Tensor, choice, kept, weights) -> torch.Tensor:
    """Per row: the weighted sum of the kept picks' experts, dropped picks left out."""
    fns = moe.experts.expert_fns()
    rows = []
    for b in range(x.shape[0]):
        terms = [weights[b, j] * fns[int(choice[b, j])](x[b : b + 1])[0] for j in range(choice.shape[1]) if kept[b, j]]
        rows.append(torch.stack(terms).sum(0) if terms else x.new_zeros(moe.experts.d_out))
    return torch.stack(rows)


def test_dropless_is_the_default_and_reports_no_overflow():
    out = _forced([5.0, 0.0, 0.0, 0.0], k=1)(torch.randn(10, 6), return_route=True)
    assert out.overflow is None and out.expert_choice is None


def test_capacity_one_with_everything_on_one_expert_drops_and_counts_exactly():
    moe = _forced([5.0, 0.0, 0.0, 0.0], k=1, capacity_factor=1.0)
    x = torch.randn(10, 6)
    out = moe(x, return_route=True)
    over = out.overflow
    assert over.capacity == 3  # ceil(1.0 * 10 * 1 / 4)
    assert over.load.tolist() == [3, 0, 0, 0] and over.dropped.tolist() == [7, 0, 0, 0]
    assert over.dropped_rows.tolist() == [3, 4, 5, 6, 7, 8, 9] and over.dropped_picks.tolist() == [0] * 7
    assert over.rerouted.tolist() == [0, 0, 0, 0] and over.rerouted_rows.numel() == 0
    assert torch.equal(out.output[3:], torch.zeros(7, 6))  # no shared experts: dropped rows give zero
    dropless = MoE(experts=moe.experts, router=moe.router)(x)
    torch.testing.assert_close(out.output[:3], dropless[:3])
    bank, seen = _counting_bank(4)
    counted = MoE(experts=bank, router=moe.router, capacity_factor=1.0)
    counted(x)
    assert seen == [3, 0, 0, 0]


def test_dropped_rows_pass_through_the_shared_experts_only():
    shared = nn.Linear(6, 6)
    moe = _forced([5.0, 0.0, 0.0, 0.0], k=1, capacity_factor=1.0, shared_experts=shared)
    x = torch.randn(10, 6)
    torch.testing.assert_close(moe(x)[3:], shared(x[3:]))


def test_reroute_sends_overflow_to_the_rows_next_choices_in_order():
    # every row picks (0, 1); C = 4: rows 4..7 overflow on both, first choices placed first
    moe = _forced([5.0, 4.0, 0.0, 0.0], k=2, capacity_factor=1.0, overflow="reroute")
    over = moe(torch.randn(8, 6), return_route=True).overflow
    assert over.choice.tolist() == [[0, 1]] * 4 + [[2, 3]] * 4
    assert over.kept.all() and over.load.tolist() == [4, 4, 4, 4]
    assert over.rerouted.tolist() == [4, 4, 0, 0] and over.dropped.tolist() == [0, 0, 0, 0]
    assert over.rerouted_rows.tolist() == [4, 4, 5, 5, 6, 6, 7, 7]
    assert over.rerouted_from.tolist() == [0, 1] * 4 and over.rerouted_to.tolist() == [2, 3] * 4


def test_reroute_of_a_top1_router_picks_each_rows_second_choice():
    torch.manual_seed(0)
    moe = _moe(k=1, capacity_factor=2.0, overflow="reroute")
    with torch.no_grad():
        moe.router.nets[0].bias.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))  # everything wants expert 0
    x = torch.randn(24, 6)
    out = moe(x, return_route=True)
    over = out.overflow
    assert over.capacity == 12 and over.rerouted.tolist() == [12, 0, 0, 0] and over.dropped.sum() == 0
    second = out.route.logits[:, 0].topk(2, dim=-1).indices[:, 1]
    assert torch.equal(over.rerouted_to, second[over.rerouted_rows])


@pytest.mark.parametrize("overflow", ["drop", "reroute"])
@pytest.mark.parametrize("gate", ["softmax_topk", "sigmoid"])
def test_capacity_path_equals_the_naive_per_row_reference_values_and_gradients(overflow, gate):
    torch.manual_seed(1)
    moe = _moe(gate, k=2, n=4, capacity_factor=0.75, overflow=overflow)
    with torch.no_grad():
        moe.router.nets[0].bias.copy_(torch.tensor([1.5, 1.0, 0.0, 0.0]))  # skewed: some experts overflow
    x = torch.randn(16, 6, requires_grad=True)
    out = moe(x, return_route=True)
    over = out.overflow
    assert over.dropped.sum() + over.rerouted.sum() > 0
    # a rerouted row's gate weights are the gate's weights of its final picks
    weights = moe.router(x, choice=over.choice).weights[:, 0] if overflow == "reroute" else out.route.weights[:, 0]
    want = _reference(moe, x, over.choice, over.kept, weights)
    torch.testing.assert_close(out.output, want, atol=1e-5, rtol=1e-4)
    params = [x, *moe.parameters()]
    grad_out = torch.randn_like(want)
    got_grads = torch.autograd.grad(out.output, params, grad_out, allow_unused=True, retain_graph=True)
    want_grads = torch.autograd.grad(want, params, grad_out, allow_unused=True)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


def test_rows_whose_picks_all_fit_equal_the_dropless_output():
    torch.manual_seed(2)
    moe = _moe(k=2, capacity_factor=0.75)
    with torch.no_grad():
        moe.router.nets[0].bias.copy_(torch.tensor([1.5, 1.0, 0.0, 0.0]))
    x = torch.randn(20, 6)
    out = moe(x, return_route=True)
    full = out.overflow.kept.all(-1)
    assert 0 < int(full.sum()) < 20
    dropless = MoE(experts=moe.experts, router=moe.router)(x)
    torch.testing.assert_close(out.output[full], dropless[full])
    large = MoE(experts=moe.experts, router=moe.router, capacity_factor=2.0)(x, return_route=True)  # C = N
    assert large.overflow.dropped.sum() == 0
    torch.testing.assert_close(large.output, dropless, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- expert choice
def _expert_choice_naive(moe: MoE, x: torch.Tensor, capacity: int) -> torch.Tensor:
    """A loop over experts: each takes its top-C rows by the router's probability (ties by row)."""
    probs = torch.softmax(moe.router.layer_logits(x), dim=-1)
    fns = moe.experts.expert_fns()
    out = [x.new_zeros(moe.experts.d_out) for _ in range(x.shape[0])]
    for e in range(probs.shape[1]):
        ranked = sorted(range(x.shape[0]), key=lambda b, e=e: (-float(probs[b, e].detach()), b))
        for b in ranked[:capacity]:
            out[b] = out[b] + probs[b, e] * fns[e](x[b : b + 1])[0]
    return torch.stack(out)


@pytest.mark.parametrize(("k", "factor", "capacity"), [(1, None, 3), (2, None, 5), (1, 2.0, 5), (2, 3.0, 10)])
def test_expert_choice_equals_a_loop_over_experts_values_and_gradients(k, factor, capacity):
    torch.manual_seed(3)
    moe = _moe(k=k, routing="expert_choice", capacity_factor=factor)
    x = torch.randn(10, 6, requires_grad=True)
    out = moe(x, return_route=True)
    assert out.expert_choice.rows.shape == (4, capacity) and out.overflow is None  # C = min(N, ceil(c N k / E))
    want = _expert_choice_naive(moe, x, capacity)
    torch.testing.assert_close(out.output, want, atol=1e-5, rtol=1e-4)
    params = [x, *moe.parameters()]
    grad_out = torch.randn_like(want)
    got_grads = torch.autograd.grad(out.output, params, grad_out, allow_unused=True)
    want_grads = torch.autograd.grad(want, params, grad_out, allow_unused=True)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)
    # the route lists every expert with the weight it gave each row (0 where it did not take the row)
    dense = out.route.weights[:, 0]
    assert out.route.choice.shape == (10, 1, 4) and int((dense > 0).sum()) == 4 * capacity
    for e in range(4):
        assert set(dense[:, e].nonzero().squeeze(1).tolist()) == set(out.expert_choice.rows[e].tolist())


def test_every_expert_processes_exactly_capacity_rows_under_expert_choice():
    bank, seen = _counting_bank(4)
    router = Router(n_modules=4, d_in=6, mode="topk", k=1, gate="softmax_topk")
    with torch.no_grad():
        router.nets[0].bias.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))  # every row prefers expert 0
    moe = MoE(experts=bank, router=router, routing="expert_choice")
    out = moe(torch.randn(12, 6), return_route=True)
    assert seen == [3, 3, 3, 3]  # C = ceil(12 * 1 / 4)
    taken = torch.bincount(out.expert_choice.rows.reshape(-1), minlength=12)
    assert int(taken.sum()) == 12 and int(taken.max()) >= 1  # a row is taken by 0 to E experts
    with pytest.raises(ConfigError, match="mode"):
        moe(torch.randn(12, 6), mode="soft")


def test_expert_choice_needs_no_gate_and_keeps_the_z_loss():
    moe = MoE(
        experts=LinearExperts(n_modules=4, d_in=6, d_out=6),
        router=Router(n_modules=4, d_in=6, mode="topk", k=2),  # no gate: only its logits are read
        routing="expert_choice",
    )
    out = moe(torch.randn(8, 6), return_route=True)
    assert "loss_balance" not in out.losses  # every expert takes C rows: balanced by construction
    out.losses["loss_z"].backward()
    assert moe.router.nets[0].weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- loss-free balancing
def _skewed_moe(bias_rate: float) -> MoE:
    torch.manual_seed(0)
    moe = MoE(
        experts=LinearExperts(n_modules=4, d_in=8, d_out=8),
        router=Router(n_modules=4, d_in=8, mode="topk", k=2, gate="softmax_topk"),
        bias_rate=bias_rate,
    )
    with torch.no_grad():
        moe.router.nets[0].bias.copy_(torch.tensor([2.0, 1.0, 0.0, 0.0]))  # experts 2 and 3 nearly unused
    return moe


def _loads(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    return torch.bincount(moe(x, return_route=True).route.choice.reshape(-1), minlength=4)


def test_loss_free_bias_makes_the_loads_nearly_uniform():
    moe = _skewed_moe(bias_rate=0.01)
    gen = torch.Generator().manual_seed(0)
    x_test = torch.randn(4096, 8, generator=gen)
    mean = 4096 * 2 / 4
    moe.eval()
    assert int(_loads(moe, x_test).min()) < 0.1 * mean  # before: two experts almost idle
    moe.train()
    with torch.no_grad():
        for _ in range(300):
            moe(torch.randn(256, 8, generator=gen))
    moe.eval()
    loads = _loads(moe, x_test)
    assert (loads - mean).abs().max() < 0.1 * mean, loads
    assert moe.expert_bias[0] < 0 < moe.expert_bias[3]


def test_the_bias_steers_the_choice_but_not_the_gate_weights():
    moe = _skewed_moe(bias_rate=0.5)
    moe(torch.randn(64, 8))  # one training step: a bias of +-0.5
    moe.eval()
    x = torch.randn(32, 8)
    route = moe(x, return_route=True).route
    logits = moe.router.layer_logits(x)
    assert torch.equal(route.choice[:, 0], (logits + moe.expert_bias).topk(2, dim=-1).indices)
    assert not torch.equal(route.choice[:, 0], logits.topk(2, dim=-1).indices)
    torch.testing.assert_close(route.weights[:, 0], moe.router.gate_weights(logits, route.choice[:, 0]))
    torch.testing.assert_close(route.probs[:, 0], torch.softmax(logits, -1))


def test_the_bias_is_a_buffer_updated_only_in_training():
    moe = _skewed_moe(bias_rate=0.1)
    assert "expert_bias" in moe.state_dict() and "expert_bias" not in _skewed_moe(bias_rate=0.0).state_dict()
    moe.eval()
    moe(torch.randn(64, 8))
    assert torch.equal(moe.expert_bias, torch.zeros(4))
    moe.train()
    moe(torch.randn(64, 8))
    assert moe.expert_bias.abs().min().item() == pytest.approx(0.1)
    copy = _skewed_moe(bias_rate=0.1)
    copy.load_state_dict(moe.state_dict())
    copy.eval(), moe.eval()
    x = torch.randn(16, 8)
    assert torch.equal(copy(x), moe(x))


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
        ({"capacity_factor": 0.0}, ["capacity_factor=0.0"]),
        ({"capacity_factor": True}, ["capacity_factor=True"]),
        ({"capacity_factor": 1.0, "overflow": "spill"}, ["overflow='spill'", "drop"]),
        ({"overflow": "reroute"}, ["overflow='reroute'", "capacity_factor=None"]),
        ({"routing": "experts"}, ["routing='experts'", "expert_choice"]),
        ({"routing": "expert_choice", "capacity_factor": 1.0, "overflow": "reroute"}, ["overflow='reroute'"]),
        ({"bias_rate": -0.1}, ["bias_rate=-0.1"]),
        ({"routing": "expert_choice", "bias_rate": 0.1}, ["bias_rate=0.1", "expert choice"]),
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


def _mixture_mse(seed: int, middle: str) -> float:
    """Test MSE after 400 Adam steps on four clusters of inputs, each with its own linear map, of
    ``Sequential(Linear, middle, Linear)`` where the middle block is a top-1 MoE of 4 MLP experts or one MLP of the
    same width (the same compute per row, router aside)."""
    gen = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(4, 8, generator=gen)
    maps = torch.randn(4, 8, 3, generator=gen)

    def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = torch.randint(0, 4, (size,), generator=gen)
        x = centres[c] + 0.5 * torch.randn(size, 8, generator=gen)
        return x, torch.einsum("bi,bio->bo", x, maps[c])

    torch.manual_seed(seed)
    moe = MoE(experts=MLPExperts(n_modules=4, d_in=16, d_hidden=16, d_out=16),
              router=Router(n_modules=4, d_in=16, mode="topk", k=1, gate="softmax_topk"))
    block = moe if middle == "moe" else nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    net = nn.Sequential(nn.Linear(8, 16), block, nn.Linear(16, 3))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x_test, y_test = batch(512)
    for _ in range(400):
        x, y = batch(128)
        loss = nn.functional.mse_loss(net(x), y) + (sum(moe.aux_losses().values()) if block is moe else 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return nn.functional.mse_loss(net(x_test), y_test).item()


@pytest.mark.parametrize("seed", [0, 1])
def test_a_gated_moe_beats_the_dense_block_of_equal_compute_on_a_mixture_of_tasks(seed):
    # measured test MSE, MoE / dense: 0.57 / 1.76 and 0.63 / 1.16 for seeds 0 and 1
    assert _mixture_mse(seed, "moe") < 0.75 * _mixture_mse(seed, "dense")


def test_an_moe_refuses_a_router_with_independent_picks():
    with pytest.raises(ConfigError, match="picks='independent'"):
        MoE(experts=MLPExperts(n_modules=4, d_in=8, d_hidden=8, d_out=8),
            router=Router(n_modules=4, d_in=8, k=2, picks="independent"), routing="expert_choice")


def test_balance_loss_of_a_soft_route_uses_the_mean_weights_and_of_a_gated_one_the_counts():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]])
    soft = RouteResult(torch.arange(3).expand(2, 3)[:, None], torch.zeros(2), probs[:, None], probs[:, None])
    assert switch_balance_loss(soft).item() == pytest.approx(3 * (probs.mean(0) ** 2).sum().item())
    gated = RouteResult(torch.tensor([[0], [1]])[:, None], torch.zeros(2), probs[:, None],
                        torch.tensor([[0.9], [0.1]])[:, None])
    assert switch_balance_loss(gated).item() == pytest.approx(3 * (0.5 * 0.65 + 0.5 * 0.25))
