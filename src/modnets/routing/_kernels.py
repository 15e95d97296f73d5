"""Kernels of the dispatch engine: run M stacked modules on rows grouped by module, forward and backward.

Each kernel reads the rows in one of the two layouts of :class:`~modnets.routing._groups.Groups`:

- sorted layout (N rows, sorted by module id, module e's rows contiguous):
  :func:`grouped_mm` (one ``torch._grouped_mm`` over stacked weights) and :func:`run_chunks` (a loop
  over the modules, never over rows);
- bucket layout (E buckets of P rows, zero-padded, then the overflow rows): :func:`to_slots` moves rows
  in, :func:`bucketed_chain` runs stacked affine layers with ReLU between them (one ``bmm`` per layer,
  plus one small matmul per overflowing module), :func:`from_slots` moves the outputs back to pick order.

The autograd functions write their backward out (contiguous incoming gradients, activations kept once,
in-place accumulation of overflow contributions). Every buffer they allocate is created like an input
(``new_empty``), so on the input's device and dtype; :func:`empty_for_write` adds a huge-page hint for
large CPU buffers, which never changes values.
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
    from ._groups import Groups

__all__ = [
    "bucketed_chain",
    "empty_for_write",
    "from_slots",
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


# --------------------------------------------------------------------------- bucket layout
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
    """Rows of x into the bucket layout of ``groups``.

    Args:
        x: (B, d) one row per example; example b feeds the slots of its k picks.
        groups: the sort, with its bucket layout built (:func:`~modnets.routing._groups.with_buckets`).

    Returns:
        (S, d), zero at the padding slots.
    """
    assert groups.slot_of_pick is not None, "build the bucket layout first (with_buckets)"
    k = groups.order.numel() // x.shape[0]
    return _ToSlots.apply(x, groups.src_of_slot, groups.slot_of_pick, groups.pad_slots, k)


def from_slots(y: Tensor, groups: Groups) -> Tensor:
    """Outputs in the bucket layout back to pick order.

    Args:
        y: (S, d) one row per slot; rows at padding slots are ignored (they get a zero gradient).
        groups: the sort, with its bucket layout built.

    Returns:
        (B * k, d) in pick order (row ``b * k + j``: pick j of example b).
    """
    return _FromSlots.apply(y, groups.slot_of_pick, groups.pad_slots)


class _BucketedChain(torch.autograd.Function):
    """Stacked affine layers, ReLU between them, over the bucket layout of :class:`Groups`.

    Rows ``0 .. E*P-1`` form E buckets of capacity P (one ``bmm`` per layer); the overflow rows after
    them run per overflowing module (``addmm``). The backward is written out: activations are kept once,
    the ReLU gradient is one ``threshold_backward``, overflow contributions are added in place into the
    weight gradients, and large weight gradients get a huge-page hint. Once differentiable.

    The incoming gradient must be zero at the padding slots (``from_slots`` guarantees it), so padding
    rows add nothing to the weight gradients.
    """

    @staticmethod
    def forward(ctx, x: Tensor, layout: tuple, *params: Tensor | None) -> Tensor:  # type: ignore[override]
        n_modules, capacity, overflow, overflow_ids = layout
        n_bucket = n_modules * capacity
        n_layers = len(params) // 2
        inputs = []
        h = x
        for layer in range(n_layers):
            w, b = params[2 * layer], params[2 * layer + 1]
            out = empty_for_write((h.shape[0], w.shape[2]), h)
            hb = h[:n_bucket].view(n_modules, capacity, -1)
            ob = out[:n_bucket].view(n_modules, capacity, -1)
            hidden = layer < n_layers - 1
            if b is None:
                torch.bmm(hb, w, out=ob)
                if hidden:
                    ob.relu_()
            elif hidden:
                torch.bmm(hb, w, out=ob)
                if ob.dtype in (torch.float32, torch.float64):
                    torch._add_relu_(ob, b.unsqueeze(1))  # bias and ReLU in one pass
                else:  # the fused kernel has no bfloat16 / float16 version on the CPU
                    ob.add_(b.unsqueeze(1)).relu_()
            else:
                torch.baddbmm(b.unsqueeze(1), hb, w, out=ob)
            for e, start, stop in overflow:
                rows = slice(n_bucket + start, n_bucket + stop)
                if b is None:
                    torch.mm(h[rows], w[e], out=out[rows])
                else:
                    torch.addmm(b[e], h[rows], w[e], out=out[rows])
                if hidden:
                    out[rows].relu_()
            inputs.append(h)
            h = out
        ctx.layout = layout
        ctx.n_layers = n_layers
        ctx.has_bias = [params[2 * i + 1] is not None for i in range(n_layers)]
        ctx.save_for_backward(*inputs, *(p for p in params if p is not None))
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        n_modules, capacity, overflow, overflow_ids = ctx.layout
        n_bucket = n_modules * capacity
        saved = ctx.saved_tensors
        inputs, rest = saved[: ctx.n_layers], list(saved[ctx.n_layers :])
        weights, biases = [], []
        for has_bias in ctx.has_bias:
            weights.append(rest.pop(0))
            biases.append(rest.pop(0) if has_bias else None)
        grads: list[Tensor | None] = [None] * (2 * ctx.n_layers)
        g = grad.contiguous()
        for layer in reversed(range(ctx.n_layers)):
            a, w, b = inputs[layer], weights[layer], biases[layer]
            ab = a[:n_bucket].view(n_modules, capacity, -1)
            gb = g[:n_bucket].view(n_modules, capacity, -1)
            if ctx.needs_input_grad[2 + 2 * layer]:
                gw = torch.bmm(ab.transpose(1, 2), gb, out=empty_for_write(tuple(w.shape), w))
                for e, start, stop in overflow:
                    rows = slice(n_bucket + start, n_bucket + stop)
                    gw[e].addmm_(a[rows].t(), g[rows])
                grads[2 * layer] = gw
            if b is not None and ctx.needs_input_grad[3 + 2 * layer]:
                gbias = gb.sum(1)
                if overflow:
                    gbias.index_add_(0, overflow_ids, g[n_bucket:])
                grads[2 * layer + 1] = gbias
            if layer == 0 and not ctx.needs_input_grad[0]:
                break
            ga = empty_for_write((g.shape[0], w.shape[1]), g)
            torch.bmm(gb, w.transpose(1, 2), out=ga[:n_bucket].view(n_modules, capacity, -1))
            for e, start, stop in overflow:
                rows = slice(n_bucket + start, n_bucket + stop)
                torch.mm(g[rows], w[e].t(), out=ga[rows])
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
    layout = (groups.n_modules, groups.capacity, groups.overflow, groups.overflow_ids)
    kind = x_slots.device.type
    if torch.is_autocast_enabled(kind):
        # the chain writes into preallocated outputs, which autocast cannot see: run it in the autocast dtype
        dtype = torch.get_autocast_dtype(kind)
        with torch.autocast(kind, enabled=False):
            return _BucketedChain.apply(x_slots.to(dtype), layout,
                                        *(None if q is None else q.to(dtype) for q in params))
    return _BucketedChain.apply(x_slots, layout, *params)
