"""Groups: the B * k picks of a routing decision grouped by module, and their bucket layout.

The dispatch engine (``modnets.routing._dispatch``) runs each module once on exactly its rows. Before
any tensor work it needs to know which rows go to which module:

- :func:`make_groups` sorts the picks by module id (stable) and counts them: the module ids of the
  sorted picks are non-decreasing, so module e's picks form one contiguous block (for grouped mm and the
  chunk loop);
- :func:`with_buckets` adds the bucket layout: E buckets of a common capacity P, zero-padded, followed by
  the overflow rows of the modules with more than P picks (for one ``bmm`` per layer);
- :func:`best_capacity` chooses P by a cost model that trades padding against overflow.

This is integer work on B * k ids, done on the host in numpy; the index tensors are created on the
device of ``choice``. The kernels that move rows into and out of the layout live in
``modnets.routing._kernels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = ["Groups", "best_capacity", "make_groups", "with_buckets"]

# Cost model of the bucket capacity (best_capacity), in units of one bucket row (all layers, forward and
# backward). Measured on 2 CPU cores (MLP 256 -> 256 -> 256, B = 4096): a bucket row costs about 5 us, an
# overflowing module about 300 us (its small per-module matmuls, each split over the cores), an overflow
# row about twice a bucket row. So overflow pays only for a few modules far above the rest.
_OVERFLOW_MODULE_COST = 60.0
_OVERFLOW_ROW_COST = 2.0


class Groups(NamedTuple):
    """Bookkeeping of one sort of the B * k picks by module id, and optionally their bucket layout.

    Pick ``i = b * k + j`` is the j-th module chosen for example b. In the bucket layout, module e's
    first ``min(n_e, P)`` picks (in sort order) take slots ``e * P ...`` and its remaining picks take
    overflow slots after the E * P bucket slots, module after module.

    The bookkeeping is integer work on B * k ids and the engine needs the counts on the host anyway (to
    size the buckets and split the rows), so it runs in numpy (a radix sort for ids below 2**16) and the
    index tensors are moved to the device of ``choice`` once.

    Attributes:
        n_modules: E.
        order: (N,) long, pick index of each sorted position (N = B * k).
        module_ids: (N,) long, module id of each sorted position (non-decreasing).
        counts: (E,) long, picks per module.
        counts_list: ``counts`` as Python ints (for ``torch.split``).
        offsets: (E,) int32 cumulative counts (end of each module's block), for grouped mm.
        max_count: the largest count.
        host: ``(order, module_ids, counts)`` as numpy arrays.
        capacity: P, the bucket capacity (0 until the bucket layout is built).
        n_slots: S = E * P + number of overflow rows.
        overflow: ``(module, start, stop)`` per module with more than P picks; rows relative to E * P.
        overflow_ids: (S - E * P,) long, module of each overflow slot.
        slot_of_pick: (N,) long, slot of each pick.
        src_of_slot: (S,) long, example row feeding each slot (0 at padding slots).
        pad_slots: (n_pad,) long, the padding slots (to be zeroed).
    """

    n_modules: int
    order: Tensor
    module_ids: Tensor
    counts: Tensor
    counts_list: list[int]
    offsets: Tensor
    max_count: int
    host: tuple[np.ndarray, np.ndarray, np.ndarray]
    capacity: int = 0
    n_slots: int = 0
    overflow: tuple[tuple[int, int, int], ...] = ()
    overflow_ids: Tensor | None = None
    slot_of_pick: Tensor | None = None
    src_of_slot: Tensor | None = None
    pad_slots: Tensor | None = None

    @property
    def padding_ratio(self) -> float:
        """E * max_count / N: the work of buckets sized to the largest count, per real pick."""
        return self.n_modules * self.max_count / max(1, self.order.numel())


def make_groups(choice: Tensor, n_modules: int) -> Groups:
    """Sort the picks by module id (stable) and count them.

    Args:
        choice: (B, k) long module ids in [0, n_modules).
        n_modules: E.

    Returns:
        The :class:`Groups` of the sort (bucket layout not built; see :func:`with_buckets`), its tensors on
        the device of ``choice``.

    Raises:
        ConfigError: module ids outside [0, n_modules).

    Example:
        >>> groups = make_groups(torch.tensor([[2], [0], [2]]), 3)
        >>> groups.order.tolist(), groups.counts_list
        ([1, 0, 2], [1, 0, 2])
    """
    flat = choice.detach().reshape(-1).cpu().numpy()
    lo, hi = int(flat.min()), int(flat.max())
    if lo < 0 or hi >= n_modules:
        raise ConfigError(
            f"choice holds module ids in [{lo}, {hi}], accepted range is [0, {n_modules - 1}] (n_modules={n_modules})"
        )
    keys = flat.astype(np.uint16) if n_modules <= 2**16 else flat  # uint16: numpy's stable sort is a radix sort
    order = np.argsort(keys, kind="stable")
    module_ids = flat[order]
    counts = np.bincount(flat, minlength=n_modules)
    device = choice.device
    return Groups(
        n_modules,
        _to_tensor(order, device),
        _to_tensor(module_ids, device),
        _to_tensor(counts, device),
        counts.tolist(),
        torch.from_numpy(np.cumsum(counts).astype(np.int32)).to(device),
        int(counts.max()),
        (order, module_ids, counts),
    )


def _to_tensor(array: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)


def best_capacity(counts: Sequence[int]) -> int:
    """The bucket capacity P minimising ``E * P + sum over n_e > P of (module cost + row cost * (n_e - P))``.

    The cost is piecewise linear in P with breaks at the counts, so only the counts are tried.

    Args:
        counts: picks per module (``groups.counts_list``), at least one positive.

    Returns:
        P, one of the counts.
    """
    ordered = sorted(counts, reverse=True)
    best_p, best_cost = ordered[0], float(len(ordered) * ordered[0])
    above = 0  # sum of the counts larger than p
    for i, p in enumerate(ordered):
        if p < 1:
            break
        cost = len(ordered) * p + i * _OVERFLOW_MODULE_COST + _OVERFLOW_ROW_COST * (above - i * p)
        if cost < best_cost:
            best_p, best_cost = p, cost
        above += p
    return best_p


def with_buckets(groups: Groups, k: int, capacity: int | None = None) -> Groups:
    """``groups`` with the bucket layout built.

    Args:
        groups: the sort.
        k: picks per example.
        capacity: bucket capacity P; ``None`` for the largest count (no overflow).

    Returns:
        ``groups`` with ``capacity``, ``n_slots``, ``overflow``, ``overflow_ids``, ``slot_of_pick``,
        ``src_of_slot`` and ``pad_slots`` filled in, on the device of ``groups.order``.
    """
    order, ids, counts = groups.host
    e, n = groups.n_modules, order.size
    p = groups.max_count if capacity is None else max(1, min(capacity, groups.max_count))
    starts = np.cumsum(counts) - counts
    rank = np.arange(n) - starts[ids]  # rank of each sorted pick within its module
    slot_sorted = ids * p + rank
    overflow: tuple[tuple[int, int, int], ...] = ()
    over_ids = ids[:0]
    if p < groups.max_count:
        extra = np.maximum(counts - p, 0)  # overflow rows per module
        over_start = np.cumsum(extra) - extra
        beyond = rank >= p
        over_ids = ids[beyond]
        slot_sorted[beyond] = e * p + over_start[over_ids] + rank[beyond] - p
        modules = np.nonzero(extra)[0]
        overflow = tuple(
            zip(modules.tolist(), over_start[modules].tolist(), (over_start + extra)[modules].tolist(), strict=True)
        )
    n_slots = e * p + over_ids.size
    slot_of_pick = np.empty(n, dtype=np.int64)
    slot_of_pick[order] = slot_sorted
    src_of_slot = np.zeros(n_slots, dtype=np.int64)
    src_of_slot[slot_sorted] = order // k
    pad_slots = np.flatnonzero(np.arange(p) >= counts[:, None])
    device = groups.order.device
    return groups._replace(
        capacity=p,
        n_slots=n_slots,
        overflow=overflow,
        overflow_ids=_to_tensor(over_ids, device),
        slot_of_pick=_to_tensor(slot_of_pick, device),
        src_of_slot=_to_tensor(src_of_slot, device),
        pad_slots=_to_tensor(pad_slots, device),
    )
