"""Module banks: M modules of one layer, stored so that the dispatch engine can run them grouped.

A bank holds the M modules a :class:`~modnets.routing.Router` chooses between. The stacked banks
(:class:`LinearExperts`, :class:`MLPExperts`) keep each weight of all modules in one parameter of shape
``(E, d_in, d_out)`` so that rows routed to different modules run in one batched matmul over buckets
(``torch.bmm``) or one grouped matmul (``torch._grouped_mm``); :class:`ModuleListExperts` wraps arbitrary
modules (convolutions, typed modules, ...) and runs them chunk by chunk.

Every bank answers the dispatch engine (``modnets.routing._dispatch``) with:

- :meth:`ExpertBank.run_bucketed`: run module e on bucket e of the bucket layout (E buckets of P rows,
  zero-padded, plus the rows that overflow them);
- :meth:`ExpertBank.run_sorted`: run all modules on rows sorted by module id (grouped mm or chunks);
- :meth:`ExpertBank.expert_fns`: one callable per module (for the chunk loop and the references);
- :meth:`ExpertBank.run_all`: every module on every row (dense soft routing).
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..errors import ConfigError

if TYPE_CHECKING:
    from ._dispatch import Groups

__all__ = [
    "ExpertBank",
    "LinearExperts",
    "MLPExperts",
    "ModuleListExperts",
    "STRATEGIES",
    "bucketed_chain",
    "empty_for_write",
    "grouped_mm",
    "grouped_mm_usable",
]

#: Execution strategies of the dispatch engine (see ``modnets.routing._dispatch``).
STRATEGIES = ("grouped_mm", "padded_bmm", "chunks")


# --------------------------------------------------------------------------- grouped matmul kernel
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
def _grouped_mm_probe(dtype: torch.dtype, device_type: str) -> bool:
    if not hasattr(torch, "_grouped_mm"):
        return False
    try:
        x = torch.randn(6, 4, dtype=dtype, device=device_type, requires_grad=True)
        w = torch.randn(3, 4, 4, dtype=dtype, device=device_type, requires_grad=True)
        offs = torch.tensor([2, 2, 6], dtype=torch.int32, device=device_type)
        y = grouped_mm(x, w, offs)
        y.sum().backward()
        ref = torch.cat([x[:2] @ w[0], x[2:] @ w[2]])
        return bool(torch.allclose(y.float(), ref.float(), atol=1e-2, rtol=1e-2))
    except (RuntimeError, NotImplementedError, TypeError):
        return False


def grouped_mm_usable(dtype: torch.dtype, device: torch.device, *dims: int) -> bool:
    """Whether ``torch._grouped_mm`` exists on this build, runs for ``dtype`` on ``device`` and accepts
    matrices whose row lengths are ``dims`` (every row stride must be a multiple of 16 bytes)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    if any((d * itemsize) % 16 for d in dims):
        return False
    return _grouped_mm_probe(dtype, torch.device(device).type)


# --------------------------------------------------------------------------- large gradient buffers
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


# --------------------------------------------------------------------------- bucketed stacked layers
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
                torch._add_relu_(ob, b.unsqueeze(1))  # bias and ReLU in one pass
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
    return _BucketedChain.apply(x_slots, layout, *params)


def _check_strategy(bank: ExpertBank, strategy: str) -> None:
    if strategy not in bank.strategies:
        raise ConfigError(
            f"strategy={strategy!r} is not supported by {type(bank).__name__}; accepted: {bank.strategies}"
        )


# --------------------------------------------------------------------------- interface
class ExpertBank(nn.Module, ABC):
    """M modules of one layer, runnable grouped by the dispatch engine.

    Attributes:
        n_modules: number of modules M (also written E in shapes).
        d_in: input feature size, or ``None`` when the bank accepts any trailing shape.
        d_out: output feature size, or ``None`` when unknown before running.
        strategies: the execution strategies this bank implements, a subset of :data:`STRATEGIES`.
    """

    n_modules: int
    d_in: int | None
    d_out: int | None
    strategies: tuple[str, ...]

    @abstractmethod
    def run_sorted(self, x_sorted: Tensor, groups: Groups, strategy: str) -> Tensor:
        """Run each module once on its contiguous block of sorted rows (``"grouped_mm"``, ``"chunks"``).

        Args:
            x_sorted: (N, *in) rows sorted by module id (``groups.module_ids``).
            groups: the sort's bookkeeping (counts, offsets).
            strategy: ``"grouped_mm"`` or ``"chunks"``, one of :attr:`strategies`.

        Returns:
            (N, *out) outputs in the same sorted order.
        """

    def run_bucketed(self, x_slots: Tensor, groups: Groups) -> Tensor:
        """Run module e on bucket e (and on its overflow rows) of the bucket layout (``"padded_bmm"``).

        Args:
            x_slots: (S, d_in) rows in the bucket layout of ``groups``: E buckets of ``groups.capacity``
                rows, zero-padded, then the overflow rows sorted by module.
            groups: the sort, with its bucket layout built.

        Returns:
            (S, d_out) in the same layout; values at padding slots are arbitrary and discarded.
        """
        raise ConfigError(f"strategy='padded_bmm' is not supported by {type(self).__name__}")

    #: Whether :meth:`run_bucketed` handles overflow rows (buckets smaller than the largest group).
    overflow_ok: bool = False

    @abstractmethod
    def expert_fns(self) -> list[Callable[[Tensor], Tensor]]:
        """One callable per module, mapping (n, *in) -> (n, *out).

        Stacked banks unbind their parameters once per call, so that a loop over the callables builds
        one gradient stack in backward instead of E full-size ones.
        """

    def run_all(self, x: Tensor) -> Tensor:
        """Every module on every row (dense soft routing).

        Args:
            x: (B, *in).

        Returns:
            (E, B, *out).
        """
        return torch.stack([f(x) for f in self.expert_fns()])


# --------------------------------------------------------------------------- stacked linear
def _init_stacked(weight: Tensor, bias: Tensor | None, fan_in: int) -> None:
    # nn.Linear's default init, applied per module.
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    nn.init.uniform_(weight, -bound, bound)
    if bias is not None:
        nn.init.uniform_(bias, -bound, bound)


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, got {value!r}")


class LinearExperts(ExpertBank):
    """M affine maps stored stacked: module e computes ``x @ weight[e] + bias[e]``.

    Args:
        n_modules: number of modules E.
        d_in: input features.
        d_out: output features.
        bias: whether each module has a bias.

    Attributes:
        weight: (E, d_in, d_out).
        bias: (E, d_out) or ``None``.

    Example:
        >>> bank = LinearExperts(4, 8, 3)
        >>> bank.run_all(torch.randn(5, 8)).shape
        torch.Size([4, 5, 3])
    """

    strategies = STRATEGIES

    def __init__(self, n_modules: int, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        _check_sizes(n_modules=n_modules, d_in=d_in, d_out=d_out)
        self.n_modules, self.d_in, self.d_out = n_modules, d_in, d_out
        self.weight = nn.Parameter(torch.empty(n_modules, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(n_modules, d_out)) if bias else None
        _init_stacked(self.weight, self.bias, d_in)

    def run_sorted(self, x_sorted: Tensor, groups: Groups, strategy: str) -> Tensor:
        _check_strategy(self, strategy)
        if strategy == "grouped_mm":
            y = grouped_mm(x_sorted, self.weight, groups.offsets)
            return y if self.bias is None else y.add_(self.bias.index_select(0, groups.module_ids))
        return _run_chunks(self.expert_fns(), x_sorted, groups)

    overflow_ok = True

    def run_bucketed(self, x_slots: Tensor, groups: Groups) -> Tensor:
        return bucketed_chain(x_slots, groups, self.weight, self.bias)

    def expert_fns(self) -> list[Callable[[Tensor], Tensor]]:
        ws = self.weight.unbind(0)
        if self.bias is None:
            return [functools.partial(torch.matmul, other=w) for w in ws]
        return [functools.partial(_affine, w=w, b=b) for w, b in zip(ws, self.bias.unbind(0), strict=True)]

    def run_all(self, x: Tensor) -> Tensor:
        y = torch.matmul(x, self.weight)  # (E, B, d_out)
        return y if self.bias is None else y + self.bias[:, None]

    def extra_repr(self) -> str:
        return f"n_modules={self.n_modules}, d_in={self.d_in}, d_out={self.d_out}, bias={self.bias is not None}"


def _affine(x: Tensor, *, w: Tensor, b: Tensor) -> Tensor:
    return torch.addmm(b, x, w)


# --------------------------------------------------------------------------- stacked MLP
def _is_relu(fn: Callable[[Tensor], Tensor]) -> bool:
    return fn is torch.relu or fn is F.relu or isinstance(fn, nn.ReLU)


class MLPExperts(ExpertBank):
    """M two-layer perceptrons stored stacked: module e computes
    ``act(x @ w1[e] + b1[e]) @ w2[e] + b2[e]``.

    Both layers run grouped, so the hidden activations stay in sorted (or padded) order between them and
    are scattered back only once. With ReLU (the default) the bucketed path (``"padded_bmm"``) uses a fused
    forward/backward that is differentiable once (use ``strategy="chunks"`` or ``"grouped_mm"`` for
    higher-order gradients).

    Args:
        n_modules: number of modules E.
        d_in: input features.
        d_hidden: hidden features.
        d_out: output features.
        activation: elementwise nonlinearity between the layers (default ``torch.relu``).

    Attributes:
        w1: (E, d_in, d_hidden). b1: (E, d_hidden). w2: (E, d_hidden, d_out). b2: (E, d_out).
    """

    strategies = STRATEGIES

    def __init__(
        self,
        n_modules: int,
        d_in: int,
        d_hidden: int,
        d_out: int,
        activation: Callable[[Tensor], Tensor] = torch.relu,
    ):
        super().__init__()
        _check_sizes(n_modules=n_modules, d_in=d_in, d_hidden=d_hidden, d_out=d_out)
        self.n_modules, self.d_in, self.d_hidden, self.d_out = n_modules, d_in, d_hidden, d_out
        self.activation = activation
        self.w1 = nn.Parameter(torch.empty(n_modules, d_in, d_hidden))
        self.b1 = nn.Parameter(torch.empty(n_modules, d_hidden))
        self.w2 = nn.Parameter(torch.empty(n_modules, d_hidden, d_out))
        self.b2 = nn.Parameter(torch.empty(n_modules, d_out))
        _init_stacked(self.w1, self.b1, d_in)
        _init_stacked(self.w2, self.b2, d_hidden)

    def run_sorted(self, x_sorted: Tensor, groups: Groups, strategy: str) -> Tensor:
        _check_strategy(self, strategy)
        if strategy == "grouped_mm":
            ids = groups.module_ids
            h = grouped_mm(x_sorted, self.w1, groups.offsets).add_(self.b1.index_select(0, ids))
            h = self.activation(h)
            return grouped_mm(h, self.w2, groups.offsets).add_(self.b2.index_select(0, ids))
        return _run_chunks(self.expert_fns(), x_sorted, groups)

    @property
    def overflow_ok(self) -> bool:  # type: ignore[override]
        return _is_relu(self.activation)

    def run_bucketed(self, x_slots: Tensor, groups: Groups) -> Tensor:
        if _is_relu(self.activation):
            return bucketed_chain(x_slots, groups, self.w1, self.b1, self.w2, self.b2)
        # any other activation: autograd through one bmm per layer (buckets hold every row: no overflow)
        assert not groups.overflow, "buckets with overflow need a ReLU MLP"
        e, p = groups.n_modules, groups.capacity
        h = self.activation(torch.baddbmm(self.b1.unsqueeze(1), x_slots.view(e, p, -1), self.w1))
        return torch.baddbmm(self.b2.unsqueeze(1), h, self.w2).view(e * p, -1)

    def expert_fns(self) -> list[Callable[[Tensor], Tensor]]:
        params = zip(self.w1.unbind(0), self.b1.unbind(0), self.w2.unbind(0), self.b2.unbind(0), strict=True)
        return [functools.partial(self._one, w1=w1, b1=b1, w2=w2, b2=b2) for w1, b1, w2, b2 in params]

    def _one(self, x: Tensor, *, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        return torch.addmm(b2, self.activation(torch.addmm(b1, x, w1)), w2)

    def run_all(self, x: Tensor) -> Tensor:
        h = self.activation(torch.matmul(x, self.w1) + self.b1[:, None])  # (E, B, d_hidden)
        return torch.baddbmm(self.b2[:, None], h, self.w2)  # (E, B, d_out)

    def extra_repr(self) -> str:
        return (
            f"n_modules={self.n_modules}, d_in={self.d_in}, d_hidden={self.d_hidden}, d_out={self.d_out}, "
            f"activation={getattr(self.activation, '__name__', self.activation)}"
        )


# --------------------------------------------------------------------------- arbitrary modules
class ModuleListExperts(ExpertBank):
    """Arbitrary modules (any input and output shapes after the batch dimension), run chunk by chunk.

    Args:
        modules: the M modules; each maps (n, *in) -> (n, *out) with the same ``*out`` for all.
        d_in: optional input feature size, checked by :class:`~modnets.routing.ModularLayer` when given.
        d_out: optional output feature size.
    """

    strategies = ("chunks",)

    def __init__(self, modules: Sequence[nn.Module], *, d_in: int | None = None, d_out: int | None = None):
        super().__init__()
        modules = list(modules)
        if not modules or not all(isinstance(m, nn.Module) for m in modules):
            raise ConfigError(
                f"modules must be a non-empty sequence of nn.Module, got {[type(m).__name__ for m in modules]}"
            )
        self.experts = nn.ModuleList(modules)
        self.n_modules, self.d_in, self.d_out = len(modules), d_in, d_out

    def run_sorted(self, x_sorted: Tensor, groups: Groups, strategy: str) -> Tensor:
        _check_strategy(self, strategy)
        return _run_chunks(self.expert_fns(), x_sorted, groups)

    def expert_fns(self) -> list[Callable[[Tensor], Tensor]]:
        return list(self.experts)


def _run_chunks(fns: list[Callable[[Tensor], Tensor]], x_sorted: Tensor, groups: Groups) -> Tensor:
    """Loop over modules (never over examples): each runs once on its contiguous slice."""
    chunks = x_sorted.split(groups.counts_list)
    outs = [f(c) for f, c, n in zip(fns, chunks, groups.counts_list, strict=True) if n]
    return outs[0] if len(outs) == 1 else torch.cat(outs)
