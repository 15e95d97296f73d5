"""Kernels of the dispatch engine: run M stacked modules on rows grouped by module, forward and backward.

Each kernel reads the rows in one of the two slot layouts of :class:`~modnets.routing._groups.Groups`:

- sorted layout (N slots, the picks sorted by module id, module e's rows contiguous, no padding):
  :func:`grouped_mm` (one ``torch._grouped_mm`` over stacked weights) and :func:`run_chunks` (a loop
  over the modules, never over rows);
- bucket layout (tiers of m modules x P rows, zero-padded; see :func:`~modnets.routing._groups.plan_buckets`):
  :func:`bucketed_chain` runs stacked affine layers with ReLU between them, one ``bmm`` per tier and layer.

:func:`to_slots` moves the example rows into either layout and :func:`combine` moves the outputs back,
weighting the k picks of each example by their gates and summing (or concatenating) them.

The autograd functions write their backward out (contiguous incoming gradients, activations kept once,
gate weights applied to the gathered gradient, in-place accumulation of the smaller tiers' weight
gradients). Every buffer they allocate is created like an input (``new_empty``), so on the input's device
and dtype; :func:`empty_for_write` adds a huge-page hint for large CPU buffers, which never changes values.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

if TYPE_CHECKING:
    from ._groups import Groups, Tier

__all__ = [
    "bucketed_chain",
    "combine",
    "empty_for_write",
    "grouped_mm",
    "grouped_mm_usable",
    "run_chunks",
    "to_slots",
]


# --------------------------------------------------------------------------- large buffers
_HUGE_PAGE = 2 << 20
# glibc serves allocations of 32 MiB and more with a fresh mmap, which the first write faults in page by
# page (4 KiB); a stacked weight gradient of E=128 modules of 256 x 256 is exactly that size and is
# allocated anew at every backward. A transparent-huge-page hint cuts those faults 512-fold (measured on
# 2 cores: 32 MiB written in 8.5 ms instead of 20 ms). Linux only; elsewhere a plain allocation.
_HINT_MIN_BYTES = 32 << 20
_MADV_HUGEPAGE = 14


@functools.cache
def _madvise() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def empty_for_write(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """``like.new_empty(shape)``, hinted to use huge pages when it is large (see ``_HINT_MIN_BYTES``).

    For buffers that are written entirely right away (matmul outputs); the hint never changes values.

    Args:
        shape: the buffer's shape.
        like: a tensor whose dtype and device the buffer takes.

    Returns:
        An uninitialised tensor of ``shape``.
    """
    out = like.new_empty(shape)
    nbytes = out.numel() * out.element_size()
    madvise = _madvise() if nbytes >= _HINT_MIN_BYTES and out.device.type == "cpu" else None
    if madvise is not None:
        start = out.data_ptr()
        first = -(-start // _HUGE_PAGE) * _HUGE_PAGE
        last = (start + nbytes) // _HUGE_PAGE * _HUGE_PAGE
        if last > first:
            madvise(first, last - first, _MADV_HUGEPAGE)  # a hint: failure is harmless
    return out


# --------------------------------------------------------------------------- grouped matmul (sorted layout)
class _GroupedMM(torch.autograd.Function):
    """``torch._grouped_mm`` with its backward written out, so that the incoming gradient is made
    contiguous first (the CPU kernel rejects the stride-0 gradients that ``sum()`` produces) and the
    output may be modified in place (the backward does not need it)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, offs: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight, offs)
        return torch._grouped_mm(x, weight, offs=offs)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight, offs = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch._grouped_mm(grad, weight.transpose(-2, -1), offs=offs)  # (N, d_in)
        if ctx.needs_input_grad[1]:
            grad_w = torch._grouped_mm(x.t(), grad, offs=offs)  # (E, d_in, d_out)
        return grad_x, grad_w, None


def grouped_mm(x: Tensor, weight: Tensor, offs: Tensor) -> Tensor:
    """Grouped matmul over rows sorted by group: rows ``offs[e-1]:offs[e]`` are multiplied by ``weight[e]``.

    Args:
        x: (N, d_in) rows sorted by group, contiguous.
        weight: (E, d_in, d_out) stacked weights.
        offs: (E,) int32 cumulative row counts (the end of each group); empty groups repeat the offset.

    Returns:
        (N, d_out).
    """
    return _GroupedMM.apply(x, weight, offs)


@functools.cache
def _grouped_mm_probe(dtype: torch.dtype, device: torch.device) -> bool:
    if not hasattr(torch, "_grouped_mm"):
        return False
    try:
        x = torch.randn(6, 4, dtype=dtype, device=device, requires_grad=True)
        w = torch.randn(3, 4, 4, dtype=dtype, device=device, requires_grad=True)
        offs = torch.tensor([2, 2, 6], dtype=torch.int32, device=device)
        y = grouped_mm(x, w, offs)
        y.sum().backward()
        ref = torch.cat([x[:2] @ w[0], x[2:] @ w[2]])
        return bool(torch.allclose(y.float(), ref.float(), atol=1e-2, rtol=1e-2))
    except (RuntimeError, NotImplementedError, TypeError):
        return False


def grouped_mm_usable(dtype: torch.dtype, device: torch.device | str, *dims: int) -> bool:
    """Whether ``torch._grouped_mm`` exists on this build, runs for ``dtype`` on ``device`` and accepts
    matrices whose row lengths are ``dims`` (every row stride must be a multiple of 16 bytes).

    The answer is probed once per dtype and device, with small tensors on that device.
    """
    if any((d * dtype.itemsize) % 16 for d in dims):
        return False
    return _grouped_mm_probe(dtype, torch.device(device))


# --------------------------------------------------------------------------- chunk loop (sorted layout)
def run_chunks(fns: list[Callable[[Tensor], Tensor]], x_sorted: Tensor, groups: Groups) -> Tensor:
    """Run module e on its contiguous block of sorted rows, one call per module with rows (never per row).

    Args:
        fns: one callable per module, (n, *in) -> (n, *out).
        x_sorted: (N, *in) rows sorted by module id.
        groups: the sort (its ``counts_list``).

    Returns:
        (N, *out) in the same sorted order.
    """
    chunks = x_sorted.split(groups.counts_list)
    outs = [f(c) for f, c, n in zip(fns, chunks, groups.counts_list, strict=True) if n]
    return outs[0] if len(outs) == 1 else torch.cat(outs)


# --------------------------------------------------------------------------- moving rows in and out of a layout
class _ToSlots(torch.autograd.Function):
    """Gather the rows of x into a slot layout, zero at padding; backward gathers back per pick and adds
    the k picks of each example (k gathers of B rows beat one gather of B * k rows and a sum over k)."""

    @staticmethod
    def forward(ctx, x: Tensor, src_of_slot: Tensor, slot_of_pick: Tensor, pad_slots: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(slot_of_pick)
        slots = torch.index_select(x, 0, src_of_slot, out=empty_for_write((src_of_slot.numel(), *x.shape[1:]), x))
        return slots.index_fill_(0, pad_slots, 0) if pad_slots.numel() else slots

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (slot_of_pick,) = ctx.saved_tensors  # (k, B)
        grad_x = grad.index_select(0, slot_of_pick[0])
        for j in range(1, slot_of_pick.shape[0]):
            grad_x.add_(grad.index_select(0, slot_of_pick[j]))
        return grad_x, None, None, None


def to_slots(x: Tensor, groups: Groups) -> Tensor:
    """Rows of x into the slot layout of ``groups`` (bucket layout or sorted order).

    Args:
        x: (B, *in) one row per example; example b feeds the slots of its k picks.
        groups: the sort, with its slot layout built (:func:`~modnets.routing._groups.with_buckets` or
            :func:`~modnets.routing._groups.with_sorted`).

    Returns:
        (S, *in), zero at the padding slots.
    """
    assert groups.slot_of_pick is not None, "build the slot layout first (with_buckets / with_sorted)"
    return _ToSlots.apply(x, groups.src_of_slot, groups.slot_of_pick, groups.pad_slots)


class _Combine(torch.autograd.Function):
    """Outputs in a slot layout -> per example, the weighted sum (or the concatenation) of its k picks.

    The gate weights are applied here rather than by autograd on a (B * k, d) copy: the forward gathers
    each pick position's rows once and accumulates them weighted (``addcmul_``); the backward gathers
    the output gradient once per slot and scales it by the slot's weight (zero at padding), and the
    weights' gradient is one dot product per pick with the gathered outputs kept from the forward.
    Rows are flattened to (·, D) with D the product of the trailing dimensions.
    """

    @staticmethod
    def forward(ctx, y: Tensor, weights: Tensor | None, slot_of_pick: Tensor, src_of_slot: Tensor,  # type: ignore[override]
                pick_of_slot: Tensor, pad_slots: Tensor, concat: bool) -> Tensor:
        k, batch = slot_of_pick.shape
        ctx.y_shape = y.shape
        y = y.reshape(y.shape[0], -1)
        keep = weights is not None and ctx.needs_input_grad[1]
        if concat:
            picked = y.index_select(0, slot_of_pick.t().reshape(-1))  # (N, D), pick order = concatenation
            parts = [picked] if keep else []
            out = picked if weights is None else picked * weights.reshape(-1, 1)
        else:
            picked = [y.index_select(0, slot_of_pick[j]) for j in range(k)]  # k x (B, D)
            parts = picked if keep else []
            if weights is None:
                out = picked[0]
                for part in picked[1:]:
                    out.add_(part)
            else:
                out = picked[0] * weights[:, :1]
                for j in range(1, k):
                    out.addcmul_(picked[j], weights[:, j : j + 1])
        ctx.save_for_backward(weights, src_of_slot, pick_of_slot, pad_slots, *parts)
        ctx.concat, ctx.k = concat, k
        return out.view(batch, -1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        weights, src_of_slot, pick_of_slot, pad_slots, *parts = ctx.saved_tensors
        k = ctx.k
        rows = grad.contiguous().view(grad.shape[0] * k if ctx.concat else grad.shape[0], -1)  # (N or B, D)
        grad_y = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_y = rows.index_select(0, pick_of_slot if ctx.concat else src_of_slot)  # (S, D)
            if weights is not None:
                grad_y.mul_(weights.reshape(-1).index_select(0, pick_of_slot).unsqueeze(1))
            if pad_slots.numel():
                grad_y.index_fill_(0, pad_slots, 0)
            grad_y = grad_y.view(ctx.y_shape)
        if parts:
            if ctx.concat:
                grad_w = (parts[0] * rows).sum(-1).view(-1, k)
            else:
                grad_w = torch.stack([(part * rows).sum(-1) for part in parts], 1)  # (B, k)
        return grad_y, grad_w, None, None, None, None, None


def combine(y: Tensor, groups: Groups, weights: Tensor | None = None, aggregate: str = "sum") -> Tensor:
    """Outputs in the slot layout of ``groups`` -> each example's weighted sum or concatenation of its picks.

    Args:
        y: (S, *out) one row per slot; rows at padding slots are ignored (they get a zero gradient).
        groups: the sort, with its slot layout built.
        weights: (B, k) optional weight of each pick, in y's dtype; gradients flow to it.
        aggregate: ``"sum"`` -> (B, *out); ``"concat"`` -> (B, k * out0, *out[1:]), picks in order.

    Returns:
        The combined outputs (see ``aggregate``).
    """
    assert groups.slot_of_pick is not None, "build the slot layout first (with_buckets / with_sorted)"
    k, batch = groups.slot_of_pick.shape
    out_shape = y.shape[1:]
    concat = aggregate == "concat"
    out = _Combine.apply(y, weights, groups.slot_of_pick, groups.src_of_slot, groups.pick_of_slot, groups.pad_slots,
                         concat)
    if concat:
        return out.view(batch, k * out_shape[0], *out_shape[1:])
    return out.view(batch, *out_shape)


# --------------------------------------------------------------------------- bucket layout
def _tier_params(tier: Tier, w: Tensor, b: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The tier's modules' weight (m, d_l, d_{l+1}) and bias (m, d_{l+1}): a view or a gathered copy."""
    if tier.span is not None:
        lo, hi = tier.span
        return w[lo:hi], None if b is None else b[lo:hi]
    wt = torch.index_select(w, 0, tier.ids, out=empty_for_write((tier.n_modules, *w.shape[1:]), w))
    return wt, None if b is None else b.index_select(0, tier.ids)


class _BucketedChain(torch.autograd.Function):
    """Stacked affine layers, ReLU between them, over the bucket layout of :class:`Groups`.

    Each tier of the layout (m modules of P rows) is one ``bmm`` per layer, over a view of the stacked
    weights when its modules are consecutive ids (the base tier: all of them) and over a gathered copy
    otherwise. The backward is written out: activations and gathered weights are kept once, the ReLU
    gradient is one ``threshold_backward``, weight gradients are written by the base tier's ``bmm`` and
    the other tiers' added in place, and large weight gradients get a huge-page hint. Once differentiable.

    The incoming gradient must be zero at the padding slots (``combine`` guarantees it), so padding rows
    add nothing to the weight gradients.
    """

    @staticmethod
    def forward(ctx, x: Tensor, tiers: tuple, *params: Tensor | None) -> Tensor:  # type: ignore[override]
        n_layers = len(params) // 2
        inputs, gathered = [], []
        h = x
        for layer in range(n_layers):
            w, b = params[2 * layer], params[2 * layer + 1]
            hidden = layer < n_layers - 1
            out = empty_for_write((h.shape[0], w.shape[2]), h)
            for tier in tiers:
                wt, bt = _tier_params(tier, w, b)
                if tier.span is None:
                    gathered.append(wt)
                m, p = tier.n_modules, tier.capacity
                hb = h[tier.start : tier.stop].view(m, p, -1)
                ob = out[tier.start : tier.stop].view(m, p, -1)
                if bt is None:
                    torch.bmm(hb, wt, out=ob)
                    if hidden:
                        ob.relu_()
                elif hidden:
                    torch.bmm(hb, wt, out=ob)
                    if ob.dtype in (torch.float32, torch.float64):
                        torch._add_relu_(ob, bt.unsqueeze(1))  # bias and ReLU in one pass
                    else:  # the fused kernel has no bfloat16 / float16 version on the CPU
                        ob.add_(bt.unsqueeze(1)).relu_()
                else:
                    torch.baddbmm(bt.unsqueeze(1), hb, wt, out=ob)
            inputs.append(h)
            h = out
        ctx.tiers = tiers
        ctx.n_layers = n_layers
        ctx.has_bias = [params[2 * i + 1] is not None for i in range(n_layers)]
        ctx.save_for_backward(*inputs, *(p for p in params if p is not None), *gathered)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        tiers, n_layers = ctx.tiers, ctx.n_layers
        saved = list(ctx.saved_tensors)
        inputs, rest = saved[:n_layers], saved[n_layers:]
        weights, biases = [], []
        for has_bias in ctx.has_bias:
            weights.append(rest.pop(0))
            biases.append(rest.pop(0) if has_bias else None)
        n_gathered = sum(t.span is None for t in tiers)
        gathered = [rest[i * n_gathered : (i + 1) * n_gathered] for i in range(n_layers)]
        spans_all = tiers[0].span == (0, weights[0].shape[0])
        grads: list[Tensor | None] = [None] * (2 * n_layers)
        g = grad.contiguous()
        for layer in reversed(range(n_layers)):
            a, w, b = inputs[layer], weights[layer], biases[layer]
            need_w = ctx.needs_input_grad[2 + 2 * layer]
            need_b = b is not None and ctx.needs_input_grad[3 + 2 * layer]
            need_a = layer > 0 or ctx.needs_input_grad[0]
            gw = (empty_for_write(tuple(w.shape), w) if spans_all else w.new_zeros(w.shape)) if need_w else None
            gbias = (b.new_empty(b.shape) if spans_all else b.new_zeros(b.shape)) if need_b else None
            ga = empty_for_write((g.shape[0], w.shape[1]), g) if need_a else None
            tier_weights = iter(gathered[layer])
            for i, tier in enumerate(tiers):
                wt = next(tier_weights) if tier.span is None else w[tier.span[0] : tier.span[1]]
                m, p = tier.n_modules, tier.capacity
                ab = a[tier.start : tier.stop].view(m, p, -1)
                gb = g[tier.start : tier.stop].view(m, p, -1)
                first = i == 0 and spans_all
                if need_w:
                    if first:
                        torch.bmm(ab.transpose(1, 2), gb, out=gw)
                    elif tier.span is not None:
                        gw[tier.span[0] : tier.span[1]].baddbmm_(ab.transpose(1, 2), gb)
                    else:
                        part = empty_for_write((m, *w.shape[1:]), w)
                        gw.index_add_(0, tier.ids, torch.bmm(ab.transpose(1, 2), gb, out=part))
                if need_b:
                    if first:
                        torch.sum(gb, 1, out=gbias)
                    elif tier.span is not None:
                        gbias[tier.span[0] : tier.span[1]].add_(gb.sum(1))
                    else:
                        gbias.index_add_(0, tier.ids, gb.sum(1))
                if need_a:
                    torch.bmm(gb, wt.transpose(1, 2), out=ga[tier.start : tier.stop].view(m, p, -1))
            grads[2 * layer], grads[2 * layer + 1] = gw, gbias
            if not need_a:
                break
            if layer > 0:  # ReLU gradient, in place (a holds the ReLU outputs)
                torch.ops.aten.threshold_backward.grad_input(ga, a, 0, grad_input=ga)
            g = ga
        grad_x = g if ctx.needs_input_grad[0] else None
        return grad_x, None, *grads


def bucketed_chain(x_slots: Tensor, groups: Groups, *params: Tensor | None) -> Tensor:
    """Run stacked affine layers ``(w1, b1, w2, b2, ...)`` with ReLU between them on the bucket layout.

    Args:
        x_slots: (S, d_in) rows in the bucket layout of ``groups`` (S = ``groups.n_slots``), zero at
            the padding slots.
        groups: the sort, with its bucket layout built.
        params: for each layer a weight (E, d_l, d_{l+1}) and a bias (E, d_{l+1}) or ``None``.

    Returns:
        (S, d_out) in the same layout (values at padding slots are arbitrary).
    """
    kind = x_slots.device.type
    if torch.is_autocast_enabled(kind):
        # the chain writes into preallocated outputs, which autocast cannot see: run it in the autocast dtype
        dtype = torch.get_autocast_dtype(kind)
        with torch.autocast(kind, enabled=False):
            return _BucketedChain.apply(x_slots.to(dtype), groups.tiers,
                                        *(None if q is None else q.to(dtype) for q in params))
    return _BucketedChain.apply(x_slots, groups.tiers, *params)
