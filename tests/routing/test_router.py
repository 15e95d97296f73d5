"""Routers: result shapes, log-probabilities, sampling, straight-through Gumbel, errors."""

from __future__ import annotations

import math

import pytest
import torch

from modnets.errors import ConfigError, ShapeError
from modnets.routing import LinearExperts, ModularLayer, Router, RouteResult, plackett_luce_log_prob, stack_routes

MODES = ["sample", "argmax", "topk", "soft", "gumbel"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("k", [1, 2])
def test_route_result_shapes(mode, static, k):
    router = Router(n_modules=5, n_layers=3, d_in=6, mode=mode, k=k, static=static, hidden=None if static else 7)
    r = router(torch.randn(4, 6), layer=2)
    width = 5 if mode == "soft" else k
    assert isinstance(r, RouteResult)
    assert r.choice.shape == (4, 1, width) and r.choice.dtype == torch.long
    assert r.log_prob.shape == (4,)
    assert r.probs.shape == (4, 1, 5)
    torch.testing.assert_close(r.probs.sum(-1), torch.ones(4, 1))
    if mode in ("soft", "gumbel"):
        assert r.weights is not None and r.weights.shape == (4, 1, width)
    else:
        assert r.weights is None
    if mode != "soft":  # k distinct modules per row
        assert all(len(set(row.tolist())) == k for row in r.choice[:, 0])


@pytest.mark.parametrize("mode", ["sample", "argmax", "gumbel"])
def test_log_prob_is_log_of_probs_at_choice_summed_over_layers(mode):
    router = Router(n_modules=4, n_layers=3, d_in=5, mode=mode)
    x = torch.randn(6, 5)
    routes = [router(x, layer=i) for i in range(3)]
    for r in routes:
        want = r.probs[:, 0].gather(-1, r.choice[:, 0]).log().sum(-1)
        torch.testing.assert_close(r.log_prob, want)
    both = stack_routes(routes)
    assert both.choice.shape == (6, 3, 1) and both.probs.shape == (6, 3, 4)
    torch.testing.assert_close(both.log_prob, both.probs.gather(-1, both.choice).log().sum((1, 2)))


def test_plackett_luce_log_prob_from_a_given_log_softmax_equals_the_direct_one():
    torch.manual_seed(0)
    for k in (1, 3):
        logits = torch.randn(5, 6, requires_grad=True)
        choice = torch.stack([torch.randperm(6)[:k] for _ in range(5)])
        direct = plackett_luce_log_prob(logits, choice)
        (g_direct,) = torch.autograd.grad(direct.sum(), logits)
        given = plackett_luce_log_prob(logits, choice, torch.log_softmax(logits, -1))
        (g_given,) = torch.autograd.grad(given.sum(), logits)
        torch.testing.assert_close(given, direct)
        torch.testing.assert_close(g_given, g_direct)


def test_top2_log_prob_is_sequential_without_replacement():
    logits = torch.tensor([[2.0, 0.0, 1.0, -1.0]])
    p = torch.softmax(logits, -1)[0]
    choice = torch.tensor([[0, 2]])
    want = math.log(p[0]) + math.log(p[2] / (1 - p[0]))
    assert plackett_luce_log_prob(logits, choice).item() == pytest.approx(want, rel=1e-5)
    router = Router(n_modules=4, static=True, mode="topk", k=2)
    with torch.no_grad():
        router.logits.copy_(logits.view(1, 1, 4))
    r = router(torch.randn(1, 3))
    assert r.choice[0, 0].tolist() == [0, 2]
    assert r.log_prob.item() == pytest.approx(want, rel=1e-5)


def test_sampling_follows_probs_and_generator_is_reproducible():
    router = Router(n_modules=3, static=True, mode="sample")
    with torch.no_grad():
        router.logits.copy_(torch.tensor([0.0, 1.0, 2.0]).view(1, 1, 3))
    x = torch.empty(20000, 0)
    r = router(x, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(r.choice.view(-1), minlength=3).float() / 20000
    torch.testing.assert_close(freq, r.probs[0, 0], atol=0.02, rtol=0)
    again = router(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(r.choice, again.choice)


def test_argmax_picks_the_most_probable_module():
    router = Router(n_modules=4, d_in=3, mode="argmax")
    r = router(torch.randn(7, 3))
    assert torch.equal(r.choice[:, 0, 0], r.probs[:, 0].argmax(-1))


def test_soft_returns_the_distribution_as_weights():
    router = Router(n_modules=4, d_in=3, mode="soft")
    r = router(torch.randn(7, 3))
    assert r.choice[0, 0].tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(r.weights, r.probs)
    assert torch.equal(r.log_prob, torch.zeros(7))


@pytest.mark.parametrize("k", [1, 2])
def test_gumbel_straight_through_is_one_hot_forward_with_gradient_to_logits(k):
    router = Router(n_modules=5, d_in=4, mode="gumbel", k=k, tau=0.5)
    r = router(torch.randn(8, 4))
    assert torch.equal(r.weights, torch.ones(8, 1, k))
    dense = r.dense()
    assert torch.equal(dense.sum(-1), torch.full((8, 1), float(k)))
    assert set(dense.unique().tolist()) <= {0.0, 1.0}
    (r.weights * torch.randn(8, 1, k)).sum().backward()
    grad = router.nets[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_tau_can_be_set_and_annealed():
    router = Router(n_modules=3, d_in=2, mode="gumbel", tau=2.0, tau_min=0.5, anneal_rate=0.01)
    assert router.anneal_tau(0) == 2.0
    assert router.anneal_tau(100) == pytest.approx(2.0 * math.exp(-1.0))
    assert router.anneal_tau(10**6) == 0.5 and router.tau == 0.5
    router.tau = 0.3
    assert router(torch.randn(2, 2)).weights is not None


def test_static_router_per_task():
    router = Router(n_modules=3, n_layers=2, static=True, n_tasks=2, mode="argmax")
    with torch.no_grad():
        router.logits[0, 1] = torch.tensor([5.0, 0.0, 0.0])
        router.logits[1, 1] = torch.tensor([0.0, 0.0, 5.0])
    r = router(layer=1, task=torch.tensor([0, 1, 1]))
    assert r.choice[:, 0, 0].tolist() == [0, 2, 2]
    assert router().choice.shape == (1, 1, 1)  # no batch given: one row


def test_dynamic_router_routes_each_layer_from_its_own_input():
    router = Router(n_modules=4, n_layers=2, d_in=3, mode="argmax")
    z = torch.randn(5, 3)
    assert not torch.equal(router.layer_logits(z, layer=0), router.layer_logits(z, layer=1))


def test_scoring_a_given_choice():
    router = Router(n_modules=4, d_in=3, mode="sample")
    x = torch.randn(5, 3)
    choice = torch.tensor([[0], [1], [2], [3], [0]])
    r = router(x, choice=choice)
    assert torch.equal(r.choice[:, 0], choice)
    torch.testing.assert_close(r.log_prob, torch.log_softmax(router.layer_logits(x), -1).gather(-1, choice)[:, 0])


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n_modules": 3, "k": 4, "d_in": 2}, ["k=4", "M", "n_modules=3"]),
        ({"n_modules": 3, "k": 0, "d_in": 2}, ["k=0", "M"]),
        ({"n_modules": 3, "mode": "greedy", "d_in": 2}, ["mode", "greedy"]),
        ({"n_modules": 3}, ["d_in"]),
        ({"n_modules": 0, "d_in": 2}, ["n_modules"]),
        ({"n_modules": 3, "d_in": 2, "tau": 0.0}, ["tau"]),
    ],
)
def test_bad_config_raises_config_error(kwargs, words):
    with pytest.raises(ConfigError) as info:
        Router(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_bad_input_raises_named_errors():
    router = Router(n_modules=3, n_layers=2, d_in=4, n_tasks=2)
    with pytest.raises(ShapeError, match=r"d_in=4.*\(5, 3\)"):
        router(torch.randn(5, 3))
    with pytest.raises(ShapeError, match="d_in=4"):
        router(None)
    with pytest.raises(ConfigError, match="layer"):
        router(torch.randn(5, 4), layer=2)
    with pytest.raises(ConfigError, match="n_tasks=2"):
        router(torch.randn(5, 4), task=torch.full((5,), 2))
    with pytest.raises(ShapeError, match="task"):
        router(torch.randn(5, 4), task=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ShapeError, match="choice"):
        router(torch.randn(5, 4), choice=torch.zeros(4, 1, dtype=torch.long))


@pytest.mark.parametrize("mode", MODES)
def test_noise_and_picks_are_created_on_the_logits_device_not_the_default_device(mode):
    router = Router(n_modules=4, d_in=3, mode=mode, k=2 if mode != "argmax" else 1)
    x = torch.randn(5, 3)
    gen = torch.Generator().manual_seed(0)
    with torch.device("meta"):  # a tensor created without device= would land here
        r = router(x, generator=gen)
        dense = r.dense()
    assert all(t.device == x.device for t in (r.choice, r.log_prob, r.probs, dense))
    assert r.weights is None or r.weights.device == x.device


# ---------------------------------------------------------------------------------------------- gates
GATES = ["softmax_topk", "topk_softmax", "sigmoid"]


def test_ungated_topk_router_gets_no_gradient_and_the_softmax_topk_gate_gives_one():
    x = torch.randn(16, 5)
    target = torch.randn(16, 4)
    grads = {}
    for gate in (None, "softmax_topk"):
        torch.manual_seed(0)
        layer = ModularLayer(
            modules=LinearExperts(n_modules=6, d_in=5, d_out=4),
            router=Router(n_modules=6, d_in=5, mode="topk", k=2, gate=gate),
            k=2,
        )
        (layer(x).output - target).pow(2).mean().backward()
        grads[gate] = layer.router.nets[0].weight.grad
    assert grads[None] is None
    assert grads["softmax_topk"] is not None and grads["softmax_topk"].abs().sum() > 0


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("mode", ["topk", "sample"])
def test_gate_weights_follow_their_formula(gate, mode):
    router = Router(n_modules=5, d_in=3, mode=mode, k=3, gate=gate)
    x = torch.randn(7, 3)
    r = router(x, generator=torch.Generator().manual_seed(0))
    logits = router.layer_logits(x)
    picks = r.choice[:, 0]
    if gate == "sigmoid":
        raw = torch.sigmoid(logits.gather(-1, picks))
    else:
        raw = torch.softmax(logits, -1).gather(-1, picks)
    torch.testing.assert_close(r.weights[:, 0], raw / raw.sum(-1, keepdim=True))  # k > 1: renormalised
    torch.testing.assert_close(r.logits[:, 0], logits)
    if mode == "topk":
        assert torch.equal(picks, logits.topk(3, dim=-1).indices)


@pytest.mark.parametrize("gate", ["softmax_topk", "topk_softmax"])
def test_softmax_gate_weights_sum_to_one_per_row(gate):
    router = Router(n_modules=8, d_in=4, mode="topk", k=3, gate=gate)
    w = router(torch.randn(10, 4)).weights
    assert w.shape == (10, 1, 3) and w.requires_grad
    torch.testing.assert_close(w.sum(-1), torch.ones(10, 1))


def test_top1_gates_are_unnormalised_by_default_and_may_be_normalised_for_k_above_one():
    x = torch.randn(6, 4)
    switch = Router(n_modules=4, d_in=4, mode="argmax", gate="softmax_topk")
    r = switch(x)
    torch.testing.assert_close(r.weights, r.probs.gather(-1, r.choice))  # the Switch gate: p of the pick
    raw = Router(n_modules=4, d_in=4, mode="topk", k=2, gate="sigmoid", normalize_gate=False)
    r = raw(x)
    torch.testing.assert_close(r.weights[:, 0], torch.sigmoid(raw.layer_logits(x).gather(-1, r.choice[:, 0])))


def test_gated_router_scores_a_given_choice_with_its_gate():
    router = Router(n_modules=4, d_in=3, mode="topk", k=2, gate="softmax_topk")
    x = torch.randn(5, 3)
    r = router(x)
    scored = router(x, choice=r.choice)
    torch.testing.assert_close(scored.weights, r.weights)
    torch.testing.assert_close(scored.log_prob, r.log_prob)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"gate": "relu"}, ["gate", "'relu'", "softmax_topk"]),
        ({"gate": "softmax_topk", "mode": "soft"}, ["gate", "mode='soft'"]),
        ({"gate": "softmax_topk", "mode": "gumbel"}, ["gate", "mode='gumbel'"]),
        ({"gate": "topk_softmax", "mode": "topk", "k": 1}, ["topk_softmax", "k=1", "softmax_topk"]),
        ({"gate": "topk_softmax", "mode": "topk", "k": 2, "normalize_gate": False}, ["normalize_gate=False"]),
        ({"gate": "softmax_topk", "mode": "argmax", "normalize_gate": True}, ["normalize_gate=True", "k=1"]),
        ({"normalize_gate": True, "mode": "topk", "k": 2}, ["normalize_gate", "gate=None"]),
        ({"gate": "sigmoid", "normalize_gate": "yes"}, ["normalize_gate", "'yes'"]),
        ({"sample_in_eval": 1}, ["sample_in_eval", "1"]),
    ],
)
def test_bad_gate_arguments_raise_config_error_naming_them(kwargs, words):
    with pytest.raises(ConfigError) as info:
        Router(n_modules=4, d_in=3, **kwargs)
    for word in words:
        assert word in str(info.value)


# ---------------------------------------------------------------------------------------------- eval mode
@pytest.mark.parametrize("mode", ["sample", "gumbel"])
def test_a_sampling_router_routes_deterministically_in_eval_mode(mode):
    router = Router(n_modules=6, d_in=3, mode=mode, k=2).eval()
    x = torch.randn(64, 3)
    first, second = router(x), router(x)
    assert torch.equal(first.choice, second.choice)
    assert torch.equal(first.choice[:, 0], router.layer_logits(x).topk(2, dim=-1).indices)
    assert first.weights is None
    assert not torch.equal(router(x, mode=mode).choice, router(x, mode=mode).choice)  # mode= wins
    router.train()
    assert not torch.equal(router(x).choice, router(x).choice)


def test_sample_in_eval_keeps_sampling_in_eval_mode():
    router = Router(n_modules=6, d_in=3, mode="sample", k=2, sample_in_eval=True).eval()
    x = torch.randn(64, 3)
    assert router.routing_mode() == "sample"
    assert not torch.equal(router(x).choice, router(x).choice)


def test_a_gated_sampling_router_keeps_its_gate_in_eval_mode():
    router = Router(n_modules=5, d_in=3, mode="sample", k=2, gate="softmax_topk").eval()
    r = router(torch.randn(4, 3))
    torch.testing.assert_close(r.weights.sum(-1), torch.ones(4, 1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("static", [False, True])
def test_jit_trace_of_a_router_raises_config_error(static):
    router = Router(n_modules=4, d_in=3, mode="argmax", static=static)
    with pytest.raises(ConfigError, match="torch.jit.trace"):
        torch.jit.trace(router, torch.randn(2, 3), check_trace=False)


def test_a_choice_bias_moves_the_picks_and_nothing_else():
    router = Router(n_modules=4, d_in=5, mode="topk", k=2, gate="softmax_topk")
    x = torch.randn(7, 5)
    bias = torch.tensor([-9.0, -9.0, 0.0, 0.0])
    plain, biased = router(x), router(x, bias=bias)
    assert biased.choice[:, 0].sort(-1).values.tolist() == [[2, 3]] * 7
    scored = router(x, choice=biased.choice)  # the unbiased policy's view of the same picks
    for got, want in zip(biased[1:], scored[1:], strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(biased.probs, plain.probs)
    with pytest.raises(ShapeError, match=r"bias.*n_modules=4"):
        router(x, bias=torch.zeros(3))


@pytest.mark.parametrize("picks", ["plackett_luce", "independent"])
def test_the_choices_are_the_whole_routing_space_and_their_probabilities_sum_to_one(picks):
    router = Router(n_modules=4, d_in=3, k=2, picks=picks)
    choices = router.choices()
    assert choices.shape == ((16 if picks == "independent" else 12), 2) and router.n_choices() == len(choices)
    assert len({tuple(c) for c in choices.tolist()}) == len(choices)
    x = torch.randn(5, 3)
    total = sum(router(x, choice=c.expand(5, 2)).log_prob.exp() for c in choices)
    torch.testing.assert_close(total, torch.ones(5))
    assert Router(n_modules=4, d_in=3, mode="soft").choices().tolist() == [[0, 1, 2, 3]]


def test_independent_picks_log_prob_is_the_sum_of_each_slot_categorical_brute_force():
    router = Router(n_modules=3, static=True, k=2, picks="independent")
    logits = torch.tensor([[0.0, 1.0, 2.0], [1.5, -1.0, 0.0]])  # one row per slot
    with torch.no_grad():
        router.logits.copy_(logits.view(1, 1, 6))
    p = torch.softmax(logits, -1)
    for a in range(3):  # brute force: every (slot 0, slot 1) pair, repeats included
        for b in range(3):
            r = router(torch.empty(1, 0), choice=torch.tensor([[a, b]]))
            assert r.log_prob.item() == pytest.approx(math.log(p[0, a] * p[1, b]), rel=1e-5)
    n = 40000
    r = router(torch.empty(n, 0), generator=torch.Generator().manual_seed(0))
    pairs = torch.bincount(r.choice[:, 0, 0] * 3 + r.choice[:, 0, 1], minlength=9).float() / n
    torch.testing.assert_close(pairs, (p[0][:, None] * p[1][None]).flatten(), atol=0.01, rtol=0)
    torch.testing.assert_close(r.log_prob, (p[0][r.choice[:, 0, 0]] * p[1][r.choice[:, 0, 1]]).log())
    torch.testing.assert_close(r.probs[0, 0], p.mean(0))  # the chance that a pick is module m
    assert r.logits is None
    assert router(torch.empty(2, 0), mode="argmax").choice[:, 0].tolist() == [[2, 0], [2, 0]]  # per slot


def test_independent_picks_may_repeat_a_module_whose_outputs_then_add_up():
    bank = LinearExperts(n_modules=3, d_in=4, d_out=2)
    layer = ModularLayer(modules=bank, router=Router(n_modules=3, d_in=4, k=2, picks="independent"), k=2)
    x = torch.randn(5, 4)
    out = layer(x, torch.tensor([[1, 1]]).expand(5, 2))
    single = ModularLayer(modules=bank, router=Router(n_modules=3, d_in=4))(x, torch.ones(5, 1, dtype=torch.long))
    torch.testing.assert_close(out.output, 2 * single.output)
    dynamic = Router(n_modules=4, d_in=3, k=3, picks="independent", hidden=5, n_tasks=2)
    r = dynamic(torch.randn(6, 3), task=torch.tensor([0, 1] * 3))
    assert r.choice.shape == (6, 1, 3) and dynamic.layer_logits(torch.randn(6, 3)).shape == (6, 3, 4)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"picks": "with_replacement"}, ["picks", "with_replacement"]),
        ({"picks": "independent", "mode": "soft"}, ["picks='independent'", "mode='soft'"]),
        ({"picks": "independent", "mode": "gumbel"}, ["picks='independent'", "mode='gumbel'"]),
        ({"picks": "independent", "mode": "topk", "gate": "softmax_topk", "k": 2}, ["gate='softmax_topk'"]),
    ],
)
def test_bad_picks_raise_config_error(kwargs, words):
    with pytest.raises(ConfigError) as info:
        Router(n_modules=4, d_in=3, **kwargs)
    assert all(w in str(info.value) for w in words)


def test_an_independent_router_refuses_soft_calls_and_scores_one_pick_per_slot():
    router = Router(n_modules=4, d_in=3, k=2, picks="independent")
    with pytest.raises(ConfigError, match="routes in the modes"):
        router(torch.randn(2, 3), mode="soft")
    with pytest.raises(ShapeError, match="one pick per slot"):
        router(torch.randn(2, 3), choice=torch.zeros(2, 1, dtype=torch.long))
