"""The dispatch engine: run only the chosen modules, each once, on exactly the rows routed to it.

Given inputs ``x`` (B, ...) and a hard choice (B, k) of module ids, :func:`dispatch` computes

- ``aggregate="sum"``: ``out[b] = sum_j w[b, j] * f_{choice[b, j]}(x[b])`` -> (B, d_out);
- ``aggregate="concat"``: the k outputs ``w[b, j] * f_{choice[b, j]}(x[b])`` side by side -> (B, k * d_out),

with ``w = 1`` when no weights are given. The B*k picks are flattened, stably sorted by module id and
counted with ``torch.bincount`` (:func:`make_groups`); the rows are gathered once (``index_select``) and the
bank runs every module once on its block of rows by one of three strategies:

- ``"padded_bmm"``: the rows go into E buckets of a common capacity P (zero-padded), one ``torch.bmm`` per
  layer runs all modules at once; rows beyond a bucket's capacity (when P is chosen below the largest
  count to save padding) run per module (:func:`with_buckets`);
- ``"grouped_mm"``: ``torch._grouped_mm`` over the stacked weights, reading the sorted rows directly;
- ``"chunks"``: a Python loop over the E modules (never over examples) with ``torch.split``; the only
  strategy for arbitrary (non-linear-shaped) modules.

Outputs go back to pick order by a gather (bucket layout) or the inverse permutation (``index_copy``),
then are weighted and summed over the k picks. Gradients flow to ``x``, to every parameter of the bank
and to ``weights``.

:func:`dispatch_naive` (a per-example loop) is the reference for tests and :func:`dispatch_mask_loop` (a
per-module boolean-mask loop, as in the original implementations) the baseline of ``modnets bench dispatch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..errors import ConfigError, ShapeError
from ._experts import ExpertBank, ModuleListExperts, empty_for_write, grouped_mm_usable

__all__ = [
    "AGGREGATES",
    "Groups",
    "as_bank",
    "choose_strategy",
    "dispatch",
    "dispatch_mask_loop",
    "dispatch_naive",
    "best_capacity",
    "from_slots",
    "make_groups",
    "to_slots",
    "with_buckets",
]

AGGREGATES = ("sum", "concat")

# Cost model of the bucket capacity (best_capacity), in units of one bucket row (all layers, forward and
# backward). Measured on 2 CPU cores (MLP 256 -> 256 -> 256, B = 4096): a bucket row costs about 5 us, an
# overflowing module about 300 us (its small per-module matmuls, each split over the cores), an overflow
# row about twice a bucket row. So overflow pays only for a few modules far above the rest.
_OVERFLOW_MODULE_COST = 60.0
_OVERFLOW_ROW_COST = 2.0
# choose_strategy, for banks without overflow rows: the largest padding ratio E * P / N at which buckets
# are preferred to grouped mm (at E = 128, i.i.d. routing, ratio 1.5, buckets were still 25 % faster).
_MAX_PADDING_RATIO = 2.0


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
        The :class:`Groups` of the sort (bucket layout not built; see :func:`with_buckets`).

    Raises:
        ConfigError: module ids outside [0, n_modules).
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
        ``src_of_slot`` and ``pad_slots`` filled in.
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


class _ToSlots(torch.autograd.Function):
    """Gather the rows of x into the bucket layout, zero at padding; backward gathers back per pick."""

    @staticmethod
    def forward(ctx, x: Tensor, src_of_slot: Tensor, slot_of_pick: Tensor, pad_slots: Tensor, k: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(slot_of_pick)
        ctx.k = k
        slots = torch.index_select(x, 0, src_of_slot, out=empty_for_write((src_of_slot.numel(), x.shape[1]), x))
        return slots.index_fill_(0, pad_slots, 0) if pad_slots.numel() else slots

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (slot_of_pick,) = ctx.saved_tensors
        grad_x = grad.index_select(0, slot_of_pick)  # (B * k, d), pick order
        if ctx.k > 1:
            grad_x = grad_x.view(-1, ctx.k, grad_x.shape[-1]).sum(1)
        return grad_x, None, None, None, None


class _FromSlots(torch.autograd.Function):
    """Gather each pick's output out of the bucket layout; backward scatters back, zero at padding."""

    @staticmethod
    def forward(ctx, y: Tensor, slot_of_pick: Tensor, pad_slots: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(slot_of_pick, pad_slots)
        ctx.n_slots = y.shape[0]
        return y.index_select(0, slot_of_pick)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        slot_of_pick, pad_slots = ctx.saved_tensors
        slots = empty_for_write((ctx.n_slots, grad.shape[-1]), grad).index_copy_(0, slot_of_pick, grad)
        if pad_slots.numel():
            slots.index_fill_(0, pad_slots, 0)
        return slots, None, None


def to_slots(x: Tensor, groups: Groups) -> Tensor:
    """Rows of x (B, d) -> (S, d) in the bucket layout of ``groups``, zero at the padding slots."""
    assert groups.slot_of_pick is not None, "build the bucket layout first (with_buckets)"
    k = groups.order.numel() // x.shape[0]
    return _ToSlots.apply(x, groups.src_of_slot, groups.slot_of_pick, groups.pad_slots, k)


def from_slots(y: Tensor, groups: Groups) -> Tensor:
    """(S, d) outputs in the bucket layout -> (B * k, d) in pick order (row ``b * k + j``: pick j of b)."""
    return _FromSlots.apply(y, groups.slot_of_pick, groups.pad_slots)


def as_bank(modules: ExpertBank | Sequence[nn.Module]) -> ExpertBank:
    """An :class:`ExpertBank` as is; an ``nn.ModuleList`` (or any sequence of modules) wrapped in
    :class:`ModuleListExperts`."""
    if isinstance(modules, ExpertBank):
        return modules
    if isinstance(modules, nn.Module) and not isinstance(modules, nn.ModuleList | nn.Sequential):
        raise ConfigError(
            f"modules must be an ExpertBank or a sequence of nn.Module, got a single {type(modules).__name__}"
        )
    return ModuleListExperts(list(modules))


def _grouped_mm_ok(bank: ExpertBank, x: Tensor) -> bool:
    dims = [d for d in (bank.d_in, getattr(bank, "d_hidden", None), bank.d_out) if d is not None]
    return grouped_mm_usable(x.dtype, x.device, *dims)


def choose_strategy(bank: ExpertBank, x: Tensor, groups: Groups) -> str:
    """The execution strategy ``"auto"`` picks.

    Measured on 2 CPU cores (MLP modules 256 -> 256 -> 256, B = 4096, top-1, forward + backward; see
    ``modnets bench dispatch`` and ``scaling``): one ``bmm`` per layer over buckets runs all modules in
    parallel and beat ``torch._grouped_mm`` (on CPU a loop of per-module matmuls, each split over the
    cores) at every E tried, balanced or i.i.d. routing: by 2-10 % at E = 8, 15-30 % at E = 32 and
    25-40 % at E = 128. Banks that handle overflow rows size the buckets by :func:`best_capacity`, so
    skewed routing never pads much; other banks pad every bucket to the largest count, which loses to
    grouped mm once that doubles the work.

    1. banks that only run chunk by chunk (arbitrary modules) -> ``"chunks"``;
    2. ``"padded_bmm"`` if the bank handles overflow rows, or if padding to the largest count costs at
       most 2x the real rows (``E * max_count <= 2 N``);
    3. else ``"grouped_mm"`` where usable (torch build, fp32 / bf16 / fp16, row strides multiple of 16
       bytes), ``"chunks"`` otherwise.

    Args:
        bank: the module bank.
        x: (B, ...) the inputs (only dtype and device are read).
        groups: the sort of the picks.

    Returns:
        One of ``"padded_bmm"``, ``"grouped_mm"``, ``"chunks"``.
    """
    if bank.strategies == ("chunks",):
        return "chunks"
    if "padded_bmm" in bank.strategies and (bank.overflow_ok or groups.padding_ratio <= _MAX_PADDING_RATIO):
        return "padded_bmm"
    if "grouped_mm" in bank.strategies and _grouped_mm_ok(bank, x):
        return "grouped_mm"
    return "chunks" if "chunks" in bank.strategies else bank.strategies[0]


def _validate(
    x: Tensor, choice: Tensor, bank: ExpertBank, weights: Tensor | None, aggregate: str, *, check_ids: bool = True
) -> None:
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ShapeError(f"x must be a tensor of shape (batch, ...), got {_shape(x)}")
    if not isinstance(choice, Tensor) or choice.dim() != 2 or choice.shape[0] != x.shape[0]:
        raise ShapeError(f"choice must have shape (batch={x.shape[0]}, k), got {_shape(choice)}")
    if choice.dtype != torch.long:
        raise ConfigError(f"choice must be a long tensor of module ids, got dtype {choice.dtype}")
    if choice.shape[1] < 1:
        raise ShapeError(f"choice must pick k >= 1 modules per row, got shape {tuple(choice.shape)}")
    if x.shape[0] < 1:
        raise ShapeError(f"x must hold at least one row, got shape {tuple(x.shape)}")
    if check_ids:  # dispatch itself checks them during the sort
        lo, hi = int(choice.min()), int(choice.max())
        if lo < 0 or hi >= bank.n_modules:
            raise ConfigError(
                f"choice holds module ids in [{lo}, {hi}], accepted range is [0, {bank.n_modules - 1}] "
                f"(n_modules={bank.n_modules})"
            )
    if bank.d_in is not None and (x.dim() != 2 or x.shape[1] != bank.d_in):
        raise ShapeError(f"x must have shape (batch, d_in={bank.d_in}), got {tuple(x.shape)}")
    if weights is not None and (not isinstance(weights, Tensor) or weights.shape != choice.shape):
        raise ShapeError(f"weights must have the shape of choice {tuple(choice.shape)}, got {_shape(weights)}")
    if aggregate not in AGGREGATES:
        raise ConfigError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")


def _shape(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__


def dispatch(
    x: Tensor,
    choice: Tensor,
    experts: ExpertBank | Sequence[nn.Module],
    *,
    weights: Tensor | None = None,
    aggregate: str = "sum",
    strategy: str = "auto",
    capacity: int | None = None,
) -> Tensor:
    """Run each chosen module once on exactly its rows and combine the outputs.

    Args:
        x: (B, d_in) inputs, or (B, *in) for a :class:`ModuleListExperts` bank.
        choice: (B, k) long module ids in [0, E).
        experts: the module bank (an ``nn.ModuleList`` is wrapped in :class:`ModuleListExperts`).
        weights: (B, k) optional weight of each pick (routing probabilities, straight-through Gumbel
            weights); gradients flow to it.
        aggregate: ``"sum"`` (weighted sum of the k outputs) or ``"concat"`` (the k weighted outputs side
            by side, in pick order).
        strategy: ``"auto"`` (see :func:`choose_strategy`), ``"grouped_mm"``, ``"padded_bmm"`` or
            ``"chunks"``. An explicit ``"grouped_mm"`` falls back to ``"padded_bmm"`` where grouped mm
            cannot run (same result).
        capacity: bucket capacity of ``"padded_bmm"``; ``None`` chooses it by a cost model
            (:func:`best_capacity`) for banks that handle overflow rows, else the largest count.

    Returns:
        (B, d_out) for ``"sum"``, (B, k * d_out) for ``"concat"`` (for multi-dimensional outputs
        (B, *out), the k outputs are concatenated along dim 1).

    Raises:
        ShapeError: x, choice or weights of the wrong shape.
        ConfigError: module ids out of range, unknown aggregate or strategy, a strategy the bank lacks.

    Example:
        >>> from modnets.routing import MLPExperts
        >>> bank = MLPExperts(4, 8, 16, 8)
        >>> dispatch(torch.randn(10, 8), torch.randint(0, 4, (10, 1)), bank).shape
        torch.Size([10, 8])
    """
    bank = as_bank(experts)
    _validate(x, choice, bank, weights, aggregate, check_ids=False)
    if strategy != "auto" and strategy not in bank.strategies:
        raise ConfigError(
            f"strategy must be 'auto' or one of {bank.strategies} for {type(bank).__name__}, got {strategy!r}"
        )
    batch, k = choice.shape
    groups = make_groups(choice, bank.n_modules)
    if strategy == "auto":
        strategy = choose_strategy(bank, x, groups)
    elif strategy == "grouped_mm" and not _grouped_mm_ok(bank, x):
        strategy = "padded_bmm"  # same result; grouped mm cannot run on this build / dtype / shape

    if strategy == "padded_bmm":
        if not bank.overflow_ok:
            capacity = None
        elif capacity is None:
            capacity = best_capacity(groups.counts_list)
        groups = with_buckets(groups, k, capacity)
        y = from_slots(bank.run_bucketed(to_slots(x, groups), groups), groups)  # (N, *out), pick order
    else:
        rows = groups.order if k == 1 else torch.div(groups.order, k, rounding_mode="floor")
        y_sorted = bank.run_sorted(x.index_select(0, rows), groups, strategy)  # (N, *out), sorted order
        # inverse permutation back to pick order; its backward is a gather
        y = y_sorted.new_empty(y_sorted.shape).index_copy(0, groups.order, y_sorted)
    return _aggregate(y, batch, k, weights, aggregate)


def _aggregate(y: Tensor, batch: int, k: int, weights: Tensor | None, aggregate: str) -> Tensor:
    """(B * k, *out) outputs in pick order -> weighted sum (B, *out) or concatenation (B, k * out0, ...)."""
    out_shape = y.shape[1:]
    if weights is not None:
        y = y * weights.reshape(-1, *([1] * len(out_shape))).to(y.dtype)
    if k == 1:
        return y
    if aggregate == "sum":
        return y.view(batch, k, *out_shape).sum(1)
    return y.reshape(batch, k * out_shape[0], *out_shape[1:])


def dispatch_naive(
    x: Tensor,
    choice: Tensor,
    experts: ExpertBank | Sequence[nn.Module],
    *,
    weights: Tensor | None = None,
    aggregate: str = "sum",
) -> Tensor:
    """Reference: a Python loop over examples and picks (slow; for tests).

    Args and Returns: as :func:`dispatch`.
    """
    bank = as_bank(experts)
    _validate(x, choice, bank, weights, aggregate)
    fns = bank.expert_fns()
    rows = []
    for b in range(choice.shape[0]):
        picks = []
        for j in range(choice.shape[1]):
            y = fns[int(choice[b, j])](x[b : b + 1])[0]
            picks.append(y if weights is None else y * weights[b, j])
        rows.append(torch.stack(picks).sum(0) if aggregate == "sum" else torch.cat(picks))
    return torch.stack(rows)


def dispatch_mask_loop(
    x: Tensor,
    choice: Tensor,
    experts: ExpertBank | Sequence[nn.Module],
    *,
    weights: Tensor | None = None,
    aggregate: str = "sum",
) -> Tensor:
    """Baseline: for each module, select its rows with a boolean mask, run it, copy the result back.

    This is the loop of the original modular-network implementations (one mask, one gather and one
    scatter per module, E of each); ``modnets bench dispatch`` compares :func:`dispatch` against it.

    Args and Returns: as :func:`dispatch`.
    """
    bank = as_bank(experts)
    _validate(x, choice, bank, weights, aggregate)
    batch, k = choice.shape
    flat = choice.reshape(-1)
    out_flat = None
    for e, f in enumerate(bank.expert_fns()):
        idx = (flat == e).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        y = f(x.index_select(0, torch.div(idx, k, rounding_mode="floor")))
        if out_flat is None:
            out_flat = y.new_zeros((batch * k, *y.shape[1:]))
        out_flat.index_copy_(0, idx, y)  # in place, as ``out[mask] = f(x[mask])``
    assert out_flat is not None
    return _aggregate(out_flat, batch, k, weights, aggregate)
