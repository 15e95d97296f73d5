"""The kernels equal a naive per-row computation, in values and in gradients."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modnets.routing import make_groups
from modnets.routing._groups import BucketPlan, plan_buckets, with_buckets, with_sorted
from modnets.routing._kernels import (
    bucketed_chain,
    combine,
    empty_for_write,
    grouped_mm,
    grouped_mm_usable,
    run_chunks,
    to_slots,
)

TOL = {"atol": 1e-5, "rtol": 1e-4}


def _assert_close_all(got: tuple, want: tuple) -> None:
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOL)


def _sorted_rows(n_modules: int, n_rows: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Module ids (N,) sorted, and the int32 offsets (E,) of the groups they form."""
    ids = torch.randint(0, n_modules, (n_rows,), generator=gen).sort().values
    offs = torch.bincount(ids, minlength=n_modules).cumsum(0).to(torch.int32)
    return ids, offs


# --------------------------------------------------------------------------- sorted layout
@settings(max_examples=40, deadline=None)
@given(
    n_modules=st.integers(1, 5),
    n_rows=st.integers(1, 12),
    d_in=st.sampled_from([4, 8]),
    d_out=st.sampled_from([4, 8]),
    seed=st.integers(0, 2**16),
)
def test_grouped_mm_equals_per_row_matmul_values_and_gradients(n_modules, n_rows, d_in, d_out, seed):
    if not grouped_mm_usable(torch.float32, torch.device("cpu"), d_in, d_out):
        pytest.skip("torch._grouped_mm does not run on this build")
    gen = torch.Generator().manual_seed(seed)
    ids, offs = _sorted_rows(n_modules, n_rows, gen)
    x = torch.randn(n_rows, d_in, generator=gen, requires_grad=True)
    w = torch.randn(n_modules, d_in, d_out, generator=gen, requires_grad=True)
    want = torch.stack([x[i] @ w[ids[i]] for i in range(n_rows)])
    got = grouped_mm(x, w, offs)
    torch.testing.assert_close(got, want, **TOL)
    grad_out = torch.randn(n_rows, d_out, generator=gen)
    _assert_close_all(torch.autograd.grad(got, (x, w), grad_out), torch.autograd.grad(want, (x, w), grad_out))


def test_grouped_mm_accepts_the_stride_zero_gradient_of_sum():
    if not grouped_mm_usable(torch.float32, torch.device("cpu"), 4, 8):
        pytest.skip("torch._grouped_mm does not run on this build")
    x = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(2, 4, 8, requires_grad=True)
    grouped_mm(x, w, torch.tensor([2, 5], dtype=torch.int32)).sum().backward()
    torch.testing.assert_close(x.grad, torch.cat([w[0].sum(1).expand(2, 4), w[1].sum(1).expand(3, 4)]), **TOL)


def test_grouped_mm_is_unusable_for_rows_not_a_multiple_of_16_bytes():
    assert not grouped_mm_usable(torch.float32, torch.device("cpu"), 4, 3)  # 12-byte rows
    assert not grouped_mm_usable(torch.float32, "cpu", 5)


def test_run_chunks_equals_per_row_calls():
    gen = torch.Generator().manual_seed(0)
    ids, _ = _sorted_rows(4, 11, gen)
    x = torch.randn(11, 3, generator=gen)
    w = torch.randn(4, 3, 2, generator=gen)
    fns = [functools.partial(torch.matmul, other=w[e]) for e in range(4)]
    groups = make_groups(ids[:, None], 4)
    torch.testing.assert_close(run_chunks(fns, x, groups), torch.stack([x[i] @ w[ids[i]] for i in range(11)]))


# --------------------------------------------------------------------------- bucket layout
def _chain_reference(h: torch.Tensor, e: int, params: list) -> torch.Tensor:
    """Module e's stacked layers on one row, ReLU between them."""
    n_layers = len(params) // 2
    for layer in range(n_layers):
        w, b = params[2 * layer], params[2 * layer + 1]
        h = h @ w[e] + (0 if b is None else b[e])
        if layer < n_layers - 1:
            h = torch.relu(h)
    return h


def _random_plan(draw, counts: list[int]) -> BucketPlan | None:
    """None (one tier), the cost model's plan, or a random base with the modules above it in random runs
    (gathered tiers, tiers over consecutive ids, no base tier at all)."""
    kind = draw(st.sampled_from(["none", "model", "random"]))
    if kind == "none":
        return None
    if kind == "model":
        return plan_buckets(counts, draw(st.one_of(st.none(), st.integers(0, 4))))
    base = draw(st.integers(0, max(counts)))
    above = [e for e, n in enumerate(counts) if n > base]
    labels = draw(st.lists(st.integers(0, 2), min_size=len(above), max_size=len(above)))
    runs = (tuple(e for e, lab in zip(above, labels, strict=True) if lab == r) for r in range(3))
    return BucketPlan(base, tuple(run for run in runs if run))


@st.composite
def _chain_cases(draw):
    n_modules = draw(st.integers(1, 5))
    k = draw(st.integers(1, 2))
    batch = draw(st.integers(1, 9))
    sizes = draw(st.lists(st.integers(1, 6), min_size=2, max_size=4))  # d_in, hidden..., d_out
    bias = draw(st.booleans())
    skewed = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    choice = torch.randint(0, n_modules, (batch, k), generator=gen)
    if skewed:  # most picks on module 0: runs beyond the base
        choice[: max(1, batch - 1), 0] = 0
    plan = _random_plan(draw, torch.bincount(choice.reshape(-1), minlength=n_modules).tolist())
    return n_modules, k, batch, sizes, bias, choice, plan, seed


@settings(max_examples=80, deadline=None)
@given(_chain_cases())
def test_bucketed_chain_equals_per_row_reference_values_and_gradients(case):
    n_modules, k, batch, sizes, bias, choice, plan, seed = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, sizes[0], generator=gen, requires_grad=True)
    params: list = []
    for d_a, d_b in zip(sizes, sizes[1:], strict=False):
        params.append(torch.randn(n_modules, d_a, d_b, generator=gen, requires_grad=True))
        params.append(torch.randn(n_modules, d_b, generator=gen, requires_grad=True) if bias else None)
    leaves = [x, *(p for p in params if p is not None)]

    groups = with_buckets(make_groups(choice, n_modules), k, plan)
    got = combine(bucketed_chain(to_slots(x, groups), groups, *params), groups, aggregate="concat")
    got = got.view(batch * k, -1)  # pick order
    flat = choice.reshape(-1).tolist()
    want = torch.stack([_chain_reference(x[i // k], e, params) for i, e in enumerate(flat)])
    torch.testing.assert_close(got, want, **TOL)
    grad_out = torch.randn(want.shape, generator=gen)
    _assert_close_all(torch.autograd.grad(got, leaves, grad_out), torch.autograd.grad(want, leaves, grad_out))


@settings(max_examples=60, deadline=None)
@given(
    n_modules=st.integers(1, 4),
    k=st.integers(1, 3),
    batch=st.integers(1, 7),
    weighted=st.booleans(),
    aggregate=st.sampled_from(["sum", "concat"]),
    layout=st.sampled_from(["buckets", "sorted"]),
    seed=st.integers(0, 2**16),
)
def test_combine_equals_weighted_sum_or_concat_per_pick(n_modules, k, batch, weighted, aggregate, layout, seed):
    gen = torch.Generator().manual_seed(seed)
    choice = torch.randint(0, n_modules, (batch, k), generator=gen)
    groups = make_groups(choice, n_modules)
    groups = with_buckets(groups, k) if layout == "buckets" else with_sorted(groups, k)
    y = torch.randn(groups.n_slots, 3, 2, generator=gen, requires_grad=True)  # (S, *out), two trailing dims
    weights = torch.rand(batch, k, generator=gen, requires_grad=True) if weighted else None
    got = combine(y, groups, weights, aggregate)
    slot = groups.slot_of_pick  # (k, B)
    picks = [y[slot[j]] * (1 if weights is None else weights[:, j, None, None]) for j in range(k)]  # k x (B, 3, 2)
    want = sum(picks) if aggregate == "sum" else torch.cat(picks, 1)
    torch.testing.assert_close(got, want, **TOL)
    leaves = [y] + ([weights] if weighted else [])
    grad_out = torch.randn(want.shape, generator=gen)
    got_grads = torch.autograd.grad(got, leaves, grad_out)
    _assert_close_all(got_grads, torch.autograd.grad(want, leaves, grad_out))
    if groups.pad_slots.numel():
        assert torch.count_nonzero(got_grads[0][groups.pad_slots]) == 0  # padding slots get a zero gradient


def test_slots_are_zero_at_padding_and_round_trip_per_pick():
    x = torch.randn(4, 3, requires_grad=True)
    choice = torch.tensor([[0, 1], [0, 2], [0, 1], [2, 0]])
    groups = with_buckets(make_groups(choice, 3), 2)  # capacity 4: modules 1 and 2 are padded
    slots = to_slots(x, groups)
    assert slots.shape == (groups.n_slots, 3)
    assert torch.count_nonzero(slots[groups.pad_slots]) == 0
    back = combine(slots, groups, aggregate="concat").view(8, 3)
    torch.testing.assert_close(back, x.repeat_interleave(2, dim=0))
    (grad_slots,) = torch.autograd.grad(back, slots, torch.ones_like(back))
    assert torch.count_nonzero(grad_slots[groups.pad_slots]) == 0
    (grad_x,) = torch.autograd.grad(to_slots(x, groups), x, torch.ones(groups.n_slots, 3))
    torch.testing.assert_close(grad_x, torch.full((4, 3), 2.0))  # each example feeds k = 2 slots


@pytest.mark.parametrize("shape", [(3, 5), (1024, 8193)])  # the second is over the huge-page threshold
def test_empty_for_write_is_a_plain_buffer_like_its_input(shape):
    like = torch.zeros(2, dtype=torch.float32)
    out = empty_for_write(shape, like)
    assert out.shape == shape and out.dtype == like.dtype and out.device == like.device
    out.fill_(1.5)
    assert bool((out == 1.5).all())


def test_kernels_create_every_buffer_on_the_input_device_not_the_default_device():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=gen, requires_grad=True)
    params = [torch.randn(3, 4, 8, generator=gen, requires_grad=True), None]
    params += [torch.randn(3, 8, 4, generator=gen, requires_grad=True), torch.zeros(3, 4, requires_grad=True)]
    choice = torch.tensor([[0], [0], [0], [1], [2], [0]])
    groups = with_buckets(make_groups(choice, 3), 1, BucketPlan(0, ((0, 2), (1,))))  # a gathered tier, no base
    gates = torch.rand(6, 1, requires_grad=True)
    with torch.device("meta"):  # a buffer created without device= would land here and fail to mix
        y = combine(bucketed_chain(to_slots(x, groups), groups, *params), groups, gates)
        y.sum().backward()
        sorted_y = grouped_mm(x, params[0], groups.offsets) if grouped_mm_usable(x.dtype, x.device, 4, 8) else x
        empty = empty_for_write((2, 2), x)
    assert y.device == x.device and x.grad.device == x.device and params[0].grad.device == x.device
    assert sorted_y.device == x.device and empty.device == x.device
