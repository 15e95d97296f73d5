"""The dispatch engine equals the naive per-example computation, in values and in gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from modnets.errors import ConfigError, ShapeError
from modnets.routing import (
    LinearExperts,
    MLPExperts,
    ModuleListExperts,
    choose_strategy,
    dispatch,
    dispatch_mask_loop,
    dispatch_naive,
    make_groups,
)
from modnets.routing._groups import plan_buckets

D_IN, D_OUT = 4, 8  # multiples of 4: grouped mm runs for real (fp32 rows of 16 bytes)


def _bank(kind: str, n_modules: int, d_in: int = D_IN, d_out: int = D_OUT) -> nn.Module:
    if kind == "linear":
        return LinearExperts(n_modules=n_modules, d_in=d_in, d_out=d_out)
    if kind == "linear_nobias":
        return LinearExperts(n_modules=n_modules, d_in=d_in, d_out=d_out, bias=False)
    if kind == "mlp":
        return MLPExperts(n_modules=n_modules, d_in=d_in, d_hidden=12, d_out=d_out)
    if kind == "mlp_tanh":
        return MLPExperts(n_modules=n_modules, d_in=d_in, d_hidden=12, d_out=d_out, activation=torch.tanh)
    return ModuleListExperts(
        modules=[nn.Sequential(nn.Linear(d_in, 5), nn.Tanh(), nn.Linear(5, d_out)) for _ in range(n_modules)]
    )


def _grads(out: torch.Tensor, params: list[torch.Tensor], grad_out: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(out, params, grad_out, allow_unused=True))


def _assert_close_all(got: list, want: list) -> None:
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None or torch.count_nonzero(g) == 0
        else:
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


@st.composite
def _cases(draw):
    n_modules = draw(st.integers(1, 6))
    k = draw(st.integers(1, min(2, n_modules)))
    batch = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    # k distinct modules per row; small B with up to 6 modules leaves some modules without rows
    choice = torch.stack([torch.randperm(n_modules, generator=gen)[:k] for _ in range(batch)])
    if draw(st.booleans()):  # skewed routing: most rows on module 0
        choice[: max(1, batch - 1), 0] = 0
        if k == 2:
            choice[:, 1] = torch.where(choice[:, 0] == choice[:, 1], (choice[:, 0] + 1) % n_modules, choice[:, 1])
    kind = draw(st.sampled_from(["linear", "linear_nobias", "mlp", "mlp_tanh", "list"]))
    weighted = draw(st.booleans())
    aggregate = draw(st.sampled_from(["sum", "concat"]))
    capacity = draw(st.one_of(st.none(), st.integers(1, 4)))
    return n_modules, k, batch, seed, choice, kind, weighted, aggregate, capacity


@settings(max_examples=60, deadline=None)
@given(_cases())
def test_dispatch_equals_naive_values_and_gradients(case):
    n_modules, k, batch, seed, choice, kind, weighted, aggregate, capacity = case
    torch.manual_seed(seed)
    bank = _bank(kind, n_modules)
    x = torch.randn(batch, D_IN, requires_grad=True)
    weights = torch.rand(batch, k, requires_grad=True) if weighted else None
    params = [x, *bank.parameters()] + ([weights] if weighted else [])
    want = dispatch_naive(x, choice, bank, weights=weights, aggregate=aggregate)
    grad_out = torch.randn_like(want)
    want_grads = _grads(want, params, grad_out)
    for strategy in ("auto", *bank.strategies):
        got = dispatch(x, choice, bank, weights=weights, aggregate=aggregate, strategy=strategy, capacity=capacity)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        _assert_close_all(_grads(got, params, grad_out), want_grads)
    got = dispatch_mask_loop(x, choice, bank, weights=weights, aggregate=aggregate)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    _assert_close_all(_grads(got, params, grad_out), want_grads)


def test_frozen_parameters_get_no_gradient_and_the_rest_stay_exact():
    bank = MLPExperts(n_modules=3, d_in=D_IN, d_hidden=8, d_out=D_OUT)
    bank.w1.requires_grad_(False)
    bank.b2.requires_grad_(False)
    x = torch.randn(9, D_IN, requires_grad=True)
    choice = torch.tensor([[0], [0], [0], [0], [1], [1], [2], [0], [0]])
    params = [x, bank.b1, bank.w2]
    want = _grads(dispatch_naive(x, choice, bank).sum(), params, None)
    got_out = dispatch(x, choice, bank, strategy="padded_bmm", capacity=2)  # with overflow rows
    _assert_close_all(list(torch.autograd.grad(got_out.sum(), params, retain_graph=True)), want)
    got_out.sum().backward()
    assert bank.w1.grad is None and bank.b2.grad is None


def test_output_shapes_sum_and_concat():
    bank = MLPExperts(n_modules=3, d_in=D_IN, d_hidden=6, d_out=D_OUT)
    x = torch.randn(5, D_IN)
    choice = torch.tensor([[0, 1], [1, 2], [2, 0], [0, 2], [1, 0]])
    assert dispatch(x, choice, bank).shape == (5, D_OUT)
    assert dispatch(x, choice, bank, aggregate="concat").shape == (5, 2 * D_OUT)


def test_unaligned_sizes_fall_back_from_grouped_mm():
    bank = LinearExperts(n_modules=3, d_in=3, d_out=5)  # 12- and 20-byte rows: grouped mm cannot run
    x = torch.randn(7, 3)
    choice = torch.randint(0, 3, (7, 1))
    got = dispatch(x, choice, bank, strategy="grouped_mm")
    torch.testing.assert_close(got, dispatch_naive(x, choice, bank), atol=1e-5, rtol=1e-4)


def test_stride_zero_gradient_from_sum_is_accepted():
    bank = MLPExperts(n_modules=4, d_in=D_IN, d_hidden=8, d_out=D_OUT)
    x = torch.randn(10, D_IN, requires_grad=True)
    choice = torch.randint(0, 4, (10, 1))
    for strategy in bank.strategies:
        dispatch(x, choice, bank, strategy=strategy).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_non_finite_input_in_one_row_does_not_leak_into_other_modules_gradients():
    bank = MLPExperts(n_modules=3, d_in=D_IN, d_hidden=8, d_out=D_OUT)
    x = torch.randn(6, D_IN)
    x[0] = float("inf")  # row 0 feeds module 0 only; padding slots must not copy it
    choice = torch.tensor([[0], [1], [1], [1], [2], [2]])
    out = dispatch(x, choice, bank, strategy="padded_bmm")
    out[1:].sum().backward()
    assert torch.isfinite(bank.w1.grad[1:]).all() and torch.isfinite(bank.w2.grad[1:]).all()


def test_arbitrary_modules_with_image_shaped_rows():
    convs = [nn.Conv2d(2, 3, 3, padding=1) for _ in range(3)]
    x = torch.randn(5, 2, 4, 4, requires_grad=True)
    choice = torch.tensor([[0, 1], [2, 0], [1, 2], [0, 2], [2, 1]])
    got = dispatch(x, choice, nn.ModuleList(convs), aggregate="concat")
    want = dispatch_naive(x, choice, nn.ModuleList(convs), aggregate="concat")
    assert got.shape == (5, 6, 4, 4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_choose_strategy():
    x = torch.randn(8, D_IN)
    groups = make_groups(torch.randint(0, 3, (8, 1)), 3)
    assert choose_strategy(_bank("list", 3), x, groups) == "chunks"
    assert choose_strategy(_bank("mlp", 3), x, groups) == "padded_bmm"


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"x": torch.randn(4, 5)}, ShapeError, ["d_in=4", "(4, 5)"]),
        ({"choice": torch.zeros(3, 1, dtype=torch.long)}, ShapeError, ["choice", "batch=4"]),
        ({"choice": torch.full((4, 1), 3)}, ConfigError, ["n_modules=3", "[3, 3]"]),
        ({"choice": torch.zeros(4, 1)}, ConfigError, ["long"]),
        ({"weights": torch.ones(4, 2)}, ShapeError, ["weights", "(4, 1)"]),
        ({"aggregate": "mean"}, ConfigError, ["aggregate", "mean"]),
        ({"strategy": "magic"}, ConfigError, ["strategy", "magic"]),
    ],
)
def test_bad_input_raises_named_error(kwargs, error, words):
    args = {"x": torch.randn(4, D_IN), "choice": torch.zeros(4, 1, dtype=torch.long)} | kwargs
    x, choice = args.pop("x"), args.pop("choice")
    with pytest.raises(error) as info:
        dispatch(x, choice, _bank("mlp", 3), **args)
    for word in words:
        assert word in str(info.value)


def test_strategy_the_bank_lacks_raises():
    with pytest.raises(ConfigError, match="grouped_mm"):
        dispatch(torch.randn(2, D_IN), torch.zeros(2, 1, dtype=torch.long), _bank("list", 2), strategy="grouped_mm")


@pytest.mark.parametrize("kind", ["linear", "mlp", "mlp_tanh", "list"])
def test_every_strategy_keeps_to_the_input_device_not_the_default_device(kind):
    bank = _bank(kind, 3)
    x = torch.randn(6, D_IN, requires_grad=True)
    choice = torch.tensor([[0, 1], [0, 2], [0, 1], [0, 2], [1, 0], [0, 2]])
    for strategy in bank.strategies:
        with torch.device("meta"):  # a tensor created without device= would land here and fail to mix
            out = dispatch(x, choice, bank, strategy=strategy, capacity=2)
            out.sum().backward()
        assert out.device == x.device and x.grad.device == x.device


@pytest.mark.parametrize("k", [1, 2])
def test_skewed_loads_run_in_tiers_and_equal_naive(k):
    # two modules far above the rest share a tier (a gathered copy of their weights), one more has its own
    counts = [200, 5, 190, 5, 5, 60, 5, 5]
    plan = plan_buckets(counts)
    assert plan.base == 5 and len(plan.runs) >= 2 and (0, 2) in plan.runs
    gen = torch.Generator().manual_seed(k)
    ids = torch.repeat_interleave(torch.arange(8), torch.tensor(counts))
    ids = ids[torch.randperm(ids.numel(), generator=gen)]
    batch = ids.numel() // k
    choice = ids[: batch * k].view(batch, k)
    if k == 2:  # distinct picks per row
        choice[:, 1] = torch.where(choice[:, 0] == choice[:, 1], (choice[:, 1] + 1) % 8, choice[:, 1])
    bank = MLPExperts(n_modules=8, d_in=D_IN, d_hidden=12, d_out=D_OUT)
    x = torch.randn(batch, D_IN, requires_grad=True)
    weights = torch.rand(batch, k, requires_grad=True)
    params = [x, weights, *bank.parameters()]
    want = dispatch_naive(x, choice, bank, weights=weights)
    got = dispatch(x, choice, bank, weights=weights, strategy="padded_bmm")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    grad_out = torch.randn_like(want)
    _assert_close_all(_grads(got, params, grad_out), _grads(want, params, grad_out))


def test_under_torch_compile_a_new_routing_does_not_recompile():
    compiles = []

    def backend(gm, example_inputs):
        compiles.append(gm)
        return gm.forward

    bank = MLPExperts(n_modules=4, d_in=D_IN, d_hidden=8, d_out=D_OUT)
    gate = nn.Linear(D_IN, 4)

    def layer(x):
        choice = gate(x).topk(1, dim=-1).indices  # data-dependent routing
        return dispatch(torch.tanh(x), choice, bank).relu()

    torch._dynamo.reset()
    try:
        compiled = torch.compile(layer, backend=backend)
        for seed in range(4):
            x = torch.randn(16, D_IN, generator=torch.Generator().manual_seed(seed))
            torch.testing.assert_close(compiled(x), layer(x))
            if seed == 0:
                first = len(compiles)
        assert len(compiles) == first  # the engine runs eagerly; the graphs around it are reused
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("aggregate", ["sum", "concat"])
def test_chunks_strategy_stays_differentiable_twice(aggregate):
    bank = _bank("mlp_tanh", 3)
    x = torch.randn(7, D_IN, requires_grad=True)
    choice = torch.tensor([[0, 1], [2, 0], [1, 2], [0, 2], [2, 1], [0, 1], [1, 0]])
    weights = torch.rand(7, 2, requires_grad=True)

    def grad_norm(fn):  # a gradient penalty: d/d(params) of |d out / d x|^2
        out = fn(x, choice, bank, weights=weights, aggregate=aggregate)
        (gx,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(gx.pow(2).sum(), [weights, *bank.parameters()])

    want = grad_norm(dispatch_naive)
    got = grad_norm(lambda *a, **kw: dispatch(*a, strategy="chunks", **kw))
    _assert_close_all(list(got), list(want))
