"""Groups: the sort of the picks by module covers every pick exactly once, and so does the bucket layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modnets.errors import ConfigError
from modnets.routing import make_groups
from modnets.routing._groups import best_capacity, with_buckets


def test_groups_sort_and_count():
    choice = torch.tensor([[2], [0], [2], [2], [0]])
    groups = make_groups(choice, 4)
    assert groups.counts.tolist() == [2, 0, 3, 0]
    assert groups.module_ids.tolist() == [0, 0, 2, 2, 2]
    assert groups.order.tolist() == [1, 4, 0, 2, 3]  # stable
    assert groups.offsets.tolist() == [2, 2, 5, 5]
    buckets = with_buckets(groups, 1, capacity=2)
    assert buckets.n_slots == 4 * 2 + 1 and buckets.overflow == ((2, 0, 1),)
    assert sorted(buckets.slot_of_pick.tolist()) == [0, 1, 4, 5, 8]


def test_best_capacity_trades_padding_for_overflow():
    assert best_capacity([5]) == 5
    assert best_capacity([100, 100, 100, 100]) == 100
    assert best_capacity([1000, 10, 10, 10]) == 10  # padding everyone to 1000 would quadruple the work


@st.composite
def _choices(draw):
    n_modules = draw(st.integers(1, 7))
    k = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 12))
    ids = draw(st.lists(st.integers(0, n_modules - 1), min_size=batch * k, max_size=batch * k))
    capacity = draw(st.one_of(st.none(), st.integers(1, batch * k)))
    return n_modules, k, torch.tensor(ids, dtype=torch.long).view(batch, k), capacity


@settings(max_examples=80, deadline=None)
@given(_choices())
def test_groups_and_buckets_cover_every_pick_exactly_once(case):
    n_modules, k, choice, capacity = case
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
    buckets = with_buckets(groups, k, capacity)
    p = buckets.capacity
    assert 1 <= p <= groups.max_count
    slot_of_pick = buckets.slot_of_pick.tolist()
    pad = buckets.pad_slots.tolist()
    assert sorted(slot_of_pick + pad) == list(range(buckets.n_slots))
    assert buckets.n_slots == n_modules * p + sum(max(0, c - p) for c in groups.counts_list)
    src = buckets.src_of_slot.tolist()
    for i, slot in enumerate(slot_of_pick):
        assert src[slot] == i // k  # the slot reads the pick's example
        e = int(flat[i])
        if slot < n_modules * p:
            assert slot // p == e  # inside its module's bucket
        else:
            assert buckets.overflow_ids[slot - n_modules * p] == e
            assert any(m == e and start <= slot - n_modules * p < stop for m, start, stop in buckets.overflow)
    assert all(slot < n_modules * p for slot in pad)  # padding only inside buckets


def test_out_of_range_ids_raise_config_error_naming_the_range():
    with pytest.raises(ConfigError, match=r"\[0, 5\].*accepted range is \[0, 2\].*n_modules=3"):
        make_groups(torch.tensor([[0], [5]]), 3)


def test_index_tensors_live_on_the_device_of_choice_not_the_default_device():
    choice = torch.tensor([[2, 0], [0, 1], [2, 1]])
    with torch.device("meta"):  # a tensor created without device= would land here
        buckets = with_buckets(make_groups(choice, 3), 2, capacity=1)
    tensors = [t for t in buckets if isinstance(t, torch.Tensor)]
    assert len(tensors) == 8
    assert all(t.device == choice.device for t in tensors)
