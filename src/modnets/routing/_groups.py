"""Groups: the B * k picks of a routing decision grouped by module, and their bucket layout.

The dispatch engine (``modnets.routing._dispatch``) runs each module once on exactly its rows. Before
any tensor work it needs to know which rows go to which module:

- :func:`make_groups` sorts the picks by module id (stable) and counts them: the module ids of the
  sorted picks are non-decreasing, so module e's picks form one contiguous block (for grouped mm and the
  chunk loop);
- :func:`plan_buckets` chooses how to pad: a base tier of all E modules at a common capacity P, and the
  picks beyond P in a few more tiers, each a run of modules with similar excess padded to the largest
  excess of its run (for one ``bmm`` per tier and layer); a cost model trades padding against tiers;
- :func:`with_buckets` builds the bucket layout of a plan: which slot each pick takes, and
  :func:`with_sorted` the sorted layout (slot = sorted position, no padding).

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

__all__ = ["BucketPlan", "Groups", "Tier", "make_groups", "plan_buckets", "with_buckets", "with_sorted"]

# Cost model of the bucket layout (plan_buckets), in units of one slot row (all layers, forward and backward).
# Measured (MLP 256 -> 256 -> 256, B = 4096, fresh-router loads at E = 8, 32, 128, k = 1, 2; CPU time of one
# thread): a slot row costs 10-20 us; a tier beyond the base costs a dozen more calls (bmm, gathers,
# index_add), and each module in it has its weights gathered in the forward and its weight gradients added
# back in the backward, which costs the most when the stacked weights outgrow the cache (E = 128: plans
# with 50-100 gathered modules ran 15-30 % slower than one tier with 75 % padding). With both costs at 32
# rows the chosen plans ran 5-20 % faster than one tier padded to the largest count at E = 8 and 32, and
# as fast at E = 128.
_TIER_COST = 32.0
_TIER_MODULE_COST = 32.0
# Beyond this many modules the run boundaries are searched on a grid of about this many points.
_PLAN_GRID = 32


class Tier(NamedTuple):
    """One batched matmul of the bucket layout: ``m`` modules of ``capacity`` rows each.

    Attributes:
        start: the tier's first slot; module ``ids[q]`` owns slots ``start + q * capacity`` onwards.
        capacity: rows per module in this tier (> 0).
        ids: (m,) long module ids of the tier, increasing, on the device of the picks.
        span: ``(lo, hi)`` when the ids are exactly ``lo .. hi - 1`` (the tier reads a view of the stacked
            weights), else ``None`` (it reads a gathered copy).
    """

    start: int
    capacity: int
    ids: Tensor
    span: tuple[int, int] | None

    @property
    def n_modules(self) -> int:
        """m."""
        return self.ids.numel()

    @property
    def stop(self) -> int:
        """One past the tier's last slot."""
        return self.start + self.n_modules * self.capacity


class BucketPlan(NamedTuple):
    """How to pad: every module gets ``base`` slots in the base tier (no base tier when 0), and each run
    of ``runs`` is one more tier holding those modules' picks beyond ``base``, padded to the largest.

    Attributes:
        base: P, the capacity of the base tier (all E modules; 0 for none).
        runs: module ids of each further tier; every module with more than ``base`` picks is in exactly
            one run, the others in none.
    """

    base: int
    runs: tuple[tuple[int, ...], ...] = ()


class Groups(NamedTuple):
    """Bookkeeping of one sort of the B * k picks by module id, and optionally their bucket layout.

    Pick ``i = b * k + j`` is the j-th module chosen for example b. In the bucket layout (see
    :class:`BucketPlan`), module e's first ``min(n_e, P)`` picks (in sort order) take slots ``e * P ...``
    of the base tier and its remaining picks take its slots in the tier of its run.

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
        tiers: the :class:`Tier` s of the bucket layout, in slot order (empty until it is built).
        n_slots: S, the slots of all tiers.
        slot_of_pick: (k, B) long, slot of pick j of example b at ``[j, b]``.
        src_of_slot: (S,) long, example row feeding each slot (0 at padding slots).
        pick_of_slot: (S,) long, pick held by each slot (0 at padding slots).
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
    tiers: tuple[Tier, ...] = ()
    n_slots: int = 0
    slot_of_pick: Tensor | None = None
    src_of_slot: Tensor | None = None
    pick_of_slot: Tensor | None = None
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


# --------------------------------------------------------------------------- plan
def plan_buckets(
    counts: Sequence[int],
    capacity: int | None = None,
    *,
    tier_cost: float = _TIER_COST,
    module_cost: float = _TIER_MODULE_COST,
) -> BucketPlan:
    """The bucket plan of least modelled cost: slots + ``tier_cost`` per tier beyond the base + ``module_cost``
    per module in such a tier.

    With the counts sorted in decreasing order c_0 >= c_1 >= ..., a plan with base P = c_i pads the
    modules i.. to P (the base tier pads all E modules to P, but the slots of the modules 0..i-1 there
    are real rows) and splits the modules 0..i-1 into runs of consecutive ranks, each padded to its
    first (largest) excess. The slot count is then ``(E - i) * c_i`` plus the runs' slots with their
    counts taken whole, so one dynamic programme over prefixes (the best runs of the i largest modules)
    serves every base at once. For E above ``_PLAN_GRID`` the run boundaries are searched on a grid of
    ranks; the plan stays exact, only its cost may be a little above the optimum.

    Args:
        counts: picks per module (``groups.counts_list``), at least one positive.
        capacity: the base capacity P to use; ``None`` chooses it too.
        tier_cost: the modelled cost of one tier beyond the base, in slot rows.
        module_cost: the modelled cost of each module in such a tier, in slot rows.

    Returns:
        The :class:`BucketPlan`; ``BucketPlan(max(counts))`` (one tier, padded to the largest count)
        when no run pays.

    Example:
        >>> plan_buckets([100, 100, 100, 100])
        BucketPlan(base=100, runs=())
        >>> plan_buckets([1000, 10, 10, 10])  # padding every module to 1000 would quadruple the work
        BucketPlan(base=10, runs=((0,),))
    """
    c_all = np.asarray(counts, dtype=np.int64)
    ranked = np.argsort(-c_all, kind="stable")  # module ids by decreasing count
    c = np.append(c_all[ranked], 0)  # c[E] = 0: a base below the smallest module (no base tier)
    n = c_all.size
    step = max(1, -(-n // _PLAN_GRID))
    grid = [np.arange(0, n + 1, step), [n]]
    if capacity is not None:
        capacity = max(0, min(int(capacity), int(c[0])))
        grid.append([np.count_nonzero(c_all > capacity)])  # the modules above a given base: a prefix of ranks
    cuts = np.unique(np.concatenate(grid))  # candidate run boundaries (ranks), from 0 to E
    # best[t]: least cost of runs covering the ranks before cuts[t] (counts taken whole), prev[t] its last cut
    best = np.zeros(cuts.size)
    prev = np.zeros(cuts.size, dtype=np.int64)
    width = c[cuts] + module_cost  # a run from cuts[s] costs (its size) * width[s] + tier_cost
    for t in range(1, cuts.size):
        cost = best[:t] + (cuts[t] - cuts[:t]) * width[:t]
        s = int(np.argmin(cost))
        best[t], prev[t] = cost[s] + tier_cost, s
    if capacity is None:
        t = int(np.argmin(best + (n - cuts) * c[cuts]))  # the base c[cuts[t]] pads the modules from cuts[t] on
        base = int(c[cuts[t]])
    else:
        base = capacity
        t = int(np.searchsorted(cuts, np.count_nonzero(c_all > base)))
    runs = []
    while t > 0:
        s = int(prev[t])
        run = ranked[cuts[s] : cuts[t]]
        run = run[c_all[run] > base]  # ties with the base need no slots beyond it
        if run.size:
            runs.append(tuple(sorted(run.tolist())))
        t = s
    return BucketPlan(base, tuple(reversed(runs)))


def with_buckets(groups: Groups, k: int, plan: BucketPlan | None = None) -> Groups:
    """``groups`` with the bucket layout of ``plan`` built.

    Args:
        groups: the sort.
        k: picks per example.
        plan: how to pad (see :class:`BucketPlan`); ``None`` for one tier padded to the largest count.

    Returns:
        ``groups`` with ``tiers``, ``n_slots``, ``slot_of_pick``, ``src_of_slot``, ``pick_of_slot`` and
        ``pad_slots`` filled in, on the device of ``groups.order``.
    """
    order, ids, counts = groups.host
    e, n = groups.n_modules, order.size
    if plan is None:
        plan = BucketPlan(groups.max_count)
    base = plan.base
    starts = np.cumsum(counts) - counts
    rank = np.arange(n) - starts[ids]  # rank of each sorted pick within its module
    device = groups.order.device
    tiers = [Tier(0, base, torch.arange(e, device=device), (0, e))] if base else []
    pads = [np.flatnonzero(np.arange(base) >= counts[:, None])] if base else []
    n_slots = e * base
    # where each module's picks beyond the base go: its tier's first slot + its position there * the capacity
    first = np.full(e, -1, dtype=np.int64)
    for run in plan.runs:
        members = np.sort(np.asarray(run, dtype=np.int64))
        excess = counts[members] - base
        assert excess.size and excess.min() > 0, "every module of a run has picks beyond the base"
        cap = int(excess.max())
        first[members] = n_slots + np.arange(members.size) * cap
        pads.append(n_slots + np.flatnonzero(np.arange(cap) >= excess[:, None]))
        lo, hi = int(members[0]), int(members[-1]) + 1
        tiers.append(Tier(n_slots, cap, _to_tensor(members, device), (lo, hi) if hi - lo == members.size else None))
        n_slots += members.size * cap
    assert (first[counts > base] >= 0).all(), "every module with picks beyond the base belongs to a run"
    beyond = rank >= base
    slot_sorted = np.where(beyond, first[ids] + rank - base, ids * base + rank)
    slot_of_pick = np.empty(n, dtype=np.int64)
    slot_of_pick[order] = slot_sorted
    pick_of_slot = np.zeros(n_slots, dtype=np.int64)
    pick_of_slot[slot_sorted] = order
    return groups._replace(
        tiers=tuple(tiers),
        n_slots=n_slots,
        slot_of_pick=_to_tensor(slot_of_pick.reshape(-1, k).T, device),
        src_of_slot=_to_tensor(pick_of_slot // k, device),
        pick_of_slot=_to_tensor(pick_of_slot, device),
        pad_slots=_to_tensor(np.concatenate(pads) if pads else np.zeros(0, dtype=np.int64), device),
    )


def with_sorted(groups: Groups, k: int) -> Groups:
    """``groups`` with the sorted layout as its slot layout: slot s holds the s-th pick in sort order, no
    padding (for grouped mm and the chunk loop).

    Args:
        groups: the sort.
        k: picks per example.

    Returns:
        ``groups`` with ``n_slots``, ``slot_of_pick``, ``src_of_slot``, ``pick_of_slot`` and ``pad_slots``
        filled in (no tiers), on the device of ``groups.order``.
    """
    order = groups.host[0]
    slot_of_pick = np.empty(order.size, dtype=np.int64)
    slot_of_pick[order] = np.arange(order.size)
    device = groups.order.device
    return groups._replace(
        n_slots=order.size,
        slot_of_pick=_to_tensor(slot_of_pick.reshape(-1, k).T, device),
        src_of_slot=groups.order if k == 1 else _to_tensor(order // k, device),
        pick_of_slot=groups.order,
        pad_slots=_to_tensor(np.zeros(0, dtype=np.int64), device),
    )
