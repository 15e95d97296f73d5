"""Groups: the sort of the picks by module covers every pick exactly once, and so does the bucket layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modnets.errors import ConfigError
from modnets.routing import make_groups
from modnets.routing._groups import (
    _TIER_COST,
    _TIER_MODULE_COST,
    BucketPlan,
    plan_buckets,
    with_buckets,
    with_sorted,
)


def test_groups_sort_and_count():
    choice = torch.tensor([[2], [0], [2], [2], [0]])
    groups = make_groups(choice, 4)
    assert groups.counts.tolist() == [2, 0, 3, 0]
    assert groups.module_ids.tolist() == [0, 0, 2, 2, 2]
    assert groups.order.tolist() == [1, 4, 0, 2, 3]  # stable
    assert groups.offsets.tolist() == [2, 2, 5, 5]
    buckets = with_buckets(groups, 1, BucketPlan(2, ((2,),)))  # base tier 4 x 2, module 2's third pick beyond
    assert buckets.n_slots == 4 * 2 + 1
    assert [(t.start, t.n_modules, t.capacity, t.span) for t in buckets.tiers] == [(0, 4, 2, (0, 4)), (8, 1, 1, (2, 3))]
    assert sorted(buckets.slot_of_pick.reshape(-1).tolist()) == [0, 1, 4, 5, 8]


def test_plan_buckets_trades_padding_for_tiers():
    assert plan_buckets([5]) == BucketPlan(5)
    assert plan_buckets([100, 100, 100, 100]) == BucketPlan(100)
    assert plan_buckets([1000, 10, 10, 10]) == BucketPlan(10, ((0,),))  # padding all to 1000: 4x the work
    # two large modules of similar counts share one tier (a gathered copy of their weights)
    assert plan_buckets([5, 400, 5, 390, 5, 5, 5, 5]) == BucketPlan(5, ((1, 3),))
    # a given base capacity is kept; the modules above it go to runs
    plan = plan_buckets([5, 400, 5, 390, 5, 5, 5, 5], capacity=3)
    assert plan.base == 3 and sorted(m for run in plan.runs for m in run) == [0, 1, 2, 3, 4, 5, 6, 7]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 300), min_size=1, max_size=70).filter(any),
    capacity=st.one_of(st.none(), st.integers(0, 320)),
)
def test_plan_buckets_puts_every_module_above_the_base_in_exactly_one_run(counts, capacity):
    plan = plan_buckets(counts, capacity)
    if capacity is not None:
        assert plan.base == min(capacity, max(counts))
    members = [m for run in plan.runs for m in run]
    assert sorted(members) == [e for e, n in enumerate(counts) if n > plan.base]
    slots = len(counts) * plan.base + sum(len(run) * max(counts[m] - plan.base for m in run) for run in plan.runs)
    assert slots >= sum(counts)
    if capacity is None:  # never more modelled work than one tier padded to the largest count
        modelled = slots + _TIER_COST * len(plan.runs) + _TIER_MODULE_COST * len(members)
        assert modelled <= len(counts) * max(counts)


def _plans(draw, counts: list[int]):
    """A random bucket plan for ``counts``: a base, and the modules above it split into random runs."""
    base = draw(st.integers(0, max(counts)))
    above = [e for e, n in enumerate(counts) if n > base]
    labels = draw(st.lists(st.integers(0, 2), min_size=len(above), max_size=len(above)))
    runs = tuple(tuple(e for e, lab in zip(above, labels, strict=True) if lab == r) for r in range(3))
    return BucketPlan(base, tuple(run for run in runs if run))


@st.composite
def _choices(draw):
    n_modules = draw(st.integers(1, 7))
    k = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 12))
    ids = draw(st.lists(st.integers(0, n_modules - 1), min_size=batch * k, max_size=batch * k))
    counts = np.bincount(ids, minlength=n_modules).tolist()
    plan = _plans(draw, counts) if draw(st.booleans()) else None
    return n_modules, k, torch.tensor(ids, dtype=torch.long).view(batch, k), plan


@settings(max_examples=80, deadline=None)
@given(_choices())
def test_groups_and_buckets_cover_every_pick_exactly_once(case):
    n_modules, k, choice, plan = case
    flat = choice.reshape(-1)
    n = flat.numel()
    groups = make_groups(choice, n_modules)

    # the sort: a stable permutation of the picks, grouped by module
    order = groups.order.tolist()
    assert sorted(order) == list(range(n))
    assert groups.module_ids.tolist() == flat[groups.order].tolist()
    assert groups.module_ids.tolist() == sorted(groups.module_ids.tolist())
    for e in range(n_modules):
        block = [i for i in order if flat[i] == e]
        assert block == sorted(block)  # stable within a module
    assert groups.counts.tolist() == torch.bincount(flat, minlength=n_modules).tolist() == groups.counts_list
    assert groups.offsets.tolist() == np.cumsum(groups.counts_list).tolist()
    assert groups.max_count == max(groups.counts_list)

    # the bucket layout: every pick has its own slot, every other slot is padding, exactly once
    buckets = with_buckets(groups, k, plan)
    plan = plan or BucketPlan(groups.max_count)
    slot_of_pick = buckets.slot_of_pick.t().reshape(-1).tolist()  # pick order
    pad = buckets.pad_slots.tolist()
    assert sorted(slot_of_pick + pad) == list(range(buckets.n_slots))
    # the tiers tile the slots: the base tier (all modules) first, then one per run, modules in increasing order
    assert [t.start for t in buckets.tiers] == [0, *(t.stop for t in buckets.tiers[:-1])]
    assert buckets.tiers[-1].stop == buckets.n_slots
    want_tiers = ([list(range(n_modules))] if plan.base else []) + [sorted(run) for run in plan.runs]
    assert [t.ids.tolist() for t in buckets.tiers] == want_tiers
    src, held = buckets.src_of_slot.tolist(), buckets.pick_of_slot.tolist()
    rank = {}
    for i in order:  # rank of each pick within its module, in sort order
        rank[i] = sum(1 for j in order[: order.index(i)] if flat[j] == flat[i])
    for i, slot in enumerate(slot_of_pick):
        assert src[slot] == i // k and held[slot] == i  # the slot reads the pick's example
        e = int(flat[i])
        (tier,) = [t for t in buckets.tiers if t.start <= slot < t.stop]
        position = (slot - tier.start) // tier.capacity
        assert tier.ids[position] == e  # inside its module's bucket of that tier
        beyond = plan.base if tier.start or not plan.base else 0
        assert (slot - tier.start) % tier.capacity == rank[i] - beyond  # in sort order
        if tier.span is not None:
            assert tier.ids.tolist() == list(range(*tier.span))
    assert all(t.capacity >= 1 for t in buckets.tiers)


def test_sorted_layout_is_the_sort_itself():
    choice = torch.tensor([[2, 0], [0, 1], [2, 1]])
    groups = with_sorted(make_groups(choice, 3), 2)
    assert groups.n_slots == 6 and groups.pad_slots.numel() == 0 and groups.tiers == ()
    assert groups.pick_of_slot.tolist() == groups.order.tolist()
    assert groups.src_of_slot.tolist() == [i // 2 for i in groups.order.tolist()]
    slots = groups.slot_of_pick.t().reshape(-1)  # pick order
    assert groups.order[slots].tolist() == list(range(6))


def test_out_of_range_ids_raise_config_error_naming_the_range():
    with pytest.raises(ConfigError, match=r"\[0, 5\].*accepted range is \[0, 2\].*n_modules=3"):
        make_groups(torch.tensor([[0], [5]]), 3)


def test_index_tensors_live_on_the_device_of_choice_not_the_default_device():
    choice = torch.tensor([[2, 0], [0, 1], [2, 1]])
    with torch.device("meta"):  # a tensor created without device= would land here
        buckets = with_buckets(make_groups(choice, 3), 2, BucketPlan(1, ((0,), (1, 2))))
    tensors = [t for t in buckets if isinstance(t, torch.Tensor)] + [t.ids for t in buckets.tiers]
    assert len(tensors) == 8 + 3
    assert all(t.device == choice.device for t in tensors)
