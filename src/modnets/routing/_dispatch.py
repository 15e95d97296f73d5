"""The dispatch engine: run only the chosen modules, each once, on exactly the rows routed to it.

Given inputs ``x`` (B, ...) and a hard choice (B, k) of module ids, :func:`dispatch` computes

- ``aggregate="sum"``: ``out[b] = sum_j w[b, j] * f_{choice[b, j]}(x[b])`` -> (B, d_out);
- ``aggregate="concat"``: the k outputs ``w[b, j] * f_{choice[b, j]}(x[b])`` side by side -> (B, k * d_out),

with ``w = 1`` when no weights are given. The B*k picks are flattened, stably sorted by module id and
counted (:func:`~modnets.routing._groups.make_groups`); the rows are gathered once into a slot layout
(``to_slots``) and the bank (``modnets.routing._experts``) runs every module on its slots by one of three
strategies, each a kernel of ``modnets.routing._kernels``:

- ``"padded_bmm"``: the bucket layout. A base tier gives every module P slots (zero-padded) and the picks
  beyond P go to a few more tiers, each a run of modules with similar loads padded to the largest of the
  run (:func:`~modnets.routing._groups.plan_buckets` chooses P and the runs by a cost model); each tier
  is one ``torch.bmm`` per layer, over a view of the stacked weights or a gathered copy of its modules';
- ``"grouped_mm"``: ``torch._grouped_mm`` over the stacked weights, reading the sorted rows directly;
- ``"chunks"``: a Python loop over the E modules (never over examples) with ``torch.split``; the only
  strategy for arbitrary (non-linear-shaped) modules.

This module holds the engine itself: validation, the choice of strategy and of the bucket plan. From the
bucket layout the way back (``combine``) gathers each pick's output from its slot, multiplies it by its
gate weight and sums (or concatenates) the k picks of each example in one autograd function, whose
backward gathers the output gradient once per slot (differentiable once, as the bucketed chain). From
the sorted layout, outputs go back to pick order by the inverse permutation (``index_copy``) and are
weighted and combined by plain autograd, so ``"grouped_mm"`` and ``"chunks"`` stay differentiable twice.
Gradients flow to ``x``, to every parameter of the bank and to ``weights``.

Under ``torch.compile`` the engine runs eagerly (its bucket plan depends on the routing's counts, so a
traced engine would recompile at every new routing); the code around it is compiled.

:func:`dispatch_naive` (a per-example loop) is the reference for tests and :func:`dispatch_mask_loop` (a
per-module boolean-mask loop, as in the original implementations) the baseline of ``modnets bench dispatch``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._experts import ExpertBank, ModuleListExperts
from ._groups import Groups, make_groups, plan_buckets, with_buckets, with_sorted
from ._kernels import combine, grouped_mm_usable, to_slots

__all__ = ["AGGREGATES", "as_bank", "choose_strategy", "dispatch", "dispatch_mask_loop", "dispatch_naive"]

AGGREGATES = ("sum", "concat")

# choose_strategy, for banks that run one tier only: the largest padding ratio E * P / N at which buckets
# are preferred to grouped mm (at E = 128, i.i.d. routing, ratio 1.5, buckets were still 25 % faster).
_MAX_PADDING_RATIO = 2.0


def as_bank(modules: ExpertBank | Sequence[nn.Module]) -> ExpertBank:
    """An :class:`ExpertBank` as is; an ``nn.ModuleList`` (or any sequence of modules) wrapped in
    :class:`ModuleListExperts`."""
    if isinstance(modules, ExpertBank):
        return modules
    if isinstance(modules, nn.Module) and not isinstance(modules, nn.ModuleList | nn.Sequential):
        raise ConfigError(
            f"modules must be an ExpertBank or a sequence of nn.Module, got a single {type(modules).__name__}"
        )
    return ModuleListExperts(modules=list(modules))


def _grouped_mm_ok(bank: ExpertBank, x: Tensor) -> bool:
    dims = [d for d in (bank.d_in, getattr(bank, "d_hidden", None), bank.d_out) if d is not None]
    return grouped_mm_usable(x.dtype, x.device, *dims)


def choose_strategy(bank: ExpertBank, x: Tensor, groups: Groups) -> str:
    """The execution strategy ``"auto"`` picks.

    Measured on 2 CPU cores (MLP modules 256 -> 256 -> 256, B = 4096, top-1, forward + backward; see
    ``modnets bench dispatch`` and ``scaling``): one ``bmm`` per layer over buckets beat
    ``torch._grouped_mm`` (on CPU a loop of per-module matmuls, each split over the cores) at every E
    tried, balanced or i.i.d. routing: by 2-10 % at E = 8, 15-30 % at E = 32 and 25-40 % at E = 128.
    Banks that run any bucket layout pad in tiers (:func:`~modnets.routing._groups.plan_buckets`), so
    skewed routing never pads much; other banks pad every bucket to the largest count, which loses to
    grouped mm once that doubles the work.

    1. banks that only run chunk by chunk (arbitrary modules) -> ``"chunks"``;
    2. ``"padded_bmm"`` if the bank runs tiers, or if padding to the largest count costs at most 2x the
       real rows (``E * max_count <= 2 N``);
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


@torch.compiler.disable  # host-side bookkeeping on data-dependent counts: traced, it would recompile every step
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
        capacity: base capacity of ``"padded_bmm"`` (the picks beyond it run in further tiers); ``None``
            chooses the whole bucket plan by a cost model (:func:`~modnets.routing._groups.plan_buckets`)
            for banks that handle several tiers, else pads every module to the largest count.

    Returns:
        (B, d_out) for ``"sum"``, (B, k * d_out) for ``"concat"`` (for multi-dimensional outputs
        (B, *out), the k outputs are concatenated along dim 1).

    Raises:
        ShapeError: x, choice or weights of the wrong shape.
        ConfigError: module ids out of range, unknown aggregate or strategy, a strategy the bank lacks.

    Example:
        >>> from modnets.routing import MLPExperts
        >>> bank = MLPExperts(n_modules=4, d_in=8, d_hidden=16, d_out=8)
        >>> dispatch(torch.randn(10, 8), torch.randint(0, 4, (10, 1)), bank).shape
        torch.Size([10, 8])
    """
    bank = as_bank(experts)
    _validate(x, choice, bank, weights, aggregate, check_ids=False)
    if strategy != "auto" and strategy not in bank.strategies:
        raise ConfigError(
            f"strategy must be 'auto' or one of {bank.strategies} for {type(bank).__name__}, got {strategy!r}"
        )
    k = choice.shape[1]
    groups = make_groups(choice, bank.n_modules)
    if strategy == "auto":
        strategy = choose_strategy(bank, x, groups)
    elif strategy == "grouped_mm" and not _grouped_mm_ok(bank, x):
        strategy = "padded_bmm"  # same result; grouped mm cannot run on this build / dtype / shape

    if strategy == "padded_bmm":
        plan = plan_buckets(groups.counts_list, capacity) if bank.overflow_ok else None
        groups = with_buckets(groups, k, plan)
        y = bank.run_bucketed(to_slots(x, groups), groups)  # (S, d_out), bucket layout
        if weights is not None:
            weights = weights.to(y.dtype)
        return combine(y, groups, weights, aggregate)
    groups = with_sorted(groups, k)
    y_sorted = bank.run_sorted(to_slots(x, groups), groups, strategy)  # (N, *out), sorted order
    # back to pick order by the inverse permutation (its backward is a gather), then plain autograd, so that
    # the sorted strategies stay differentiable twice (the bucketed chain and ``combine`` are once)
    y = y_sorted.new_empty(y_sorted.shape).index_copy(0, groups.order, y_sorted)
    return _aggregate(y, choice.shape[0], k, weights, aggregate)


def _aggregate(y: Tensor, batch: int, k: int, weights: Tensor | None, aggregate: str) -> Tensor:
    """(B * k, *out) outputs in pick order -> weighted sum (B, *out) or concatenation (B, k * out0, ...),
    by autograd (the sorted strategies and the mask-loop baseline)."""
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
