"""Module banks: M modules of one layer, stored so that the dispatch engine can run them grouped.

A bank holds the M modules a :class:`~modnets.routing.Router` chooses between. The stacked banks
(:class:`LinearExperts`, :class:`MLPExperts`) keep each weight of all modules in one parameter of shape
``(E, d_in, d_out)`` so that rows routed to different modules run in one batched matmul over buckets
(``torch.bmm``) or one grouped matmul (``torch._grouped_mm``); :class:`ModuleListExperts` wraps arbitrary
modules (convolutions, typed modules, ...) and runs them chunk by chunk. Every constructor takes keyword
arguments only and rejects a bad one with a :class:`~modnets.errors.ConfigError` naming it and its value.

Every bank answers the dispatch engine (``modnets.routing._dispatch``) with:

- :meth:`ExpertBank.run_bucketed`: run each module on its buckets of the bucket layout (tiers of
  m modules x P rows, zero-padded);
- :meth:`ExpertBank.run_sorted`: run all modules on rows sorted by module id (grouped mm or chunks);
- :meth:`ExpertBank.expert_fns`: one callable per module (for the chunk loop and the references);
- :meth:`ExpertBank.run_all`: every module on every row (dense soft routing).

The banks compute; the kernels they call (grouped matmul, bucketed chain, chunk loop) live in
``modnets.routing._kernels`` and the row bookkeeping (:class:`~modnets.routing.Groups`) in
``modnets.routing._groups``.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ._kernels import bucketed_chain, grouped_mm, run_chunks

if TYPE_CHECKING:
    from ._groups import Groups

__all__ = ["ExpertBank", "LinearExperts", "MLPExperts", "ModuleListExperts", "STRATEGIES"]

#: Execution strategies of the dispatch engine (see ``modnets.routing._dispatch``).
STRATEGIES = ("grouped_mm", "padded_bmm", "chunks")


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
        """Run each module on its buckets of the bucket layout (``"padded_bmm"``).

        Args:
            x_slots: (S, d_in) rows in the bucket layout of ``groups``: tiers of m modules x P rows each,
                zero-padded (``groups.tiers``).
            groups: the sort, with its bucket layout built.

        Returns:
            (S, d_out) in the same layout; values at padding slots are arbitrary and discarded.
        """
        raise ConfigError(f"strategy='padded_bmm' is not supported by {type(self).__name__}")

    #: Whether :meth:`run_bucketed` handles any bucket layout (several tiers), not only one tier of all
    #: modules padded to the largest count.
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


def _check_size(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        accepted = "None or a positive int" if optional else "a positive int"
        raise ConfigError(f"{name} must be {accepted}, got {name}={value!r}")


class LinearExperts(ExpertBank):
    """M affine maps stored stacked: module e computes ``x @ weight[e] + bias[e]``.

    Args:
        n_modules: number of modules E, a positive int.
        d_in: input features, a positive int.
        d_out: output features, a positive int.
        bias: whether each module has a bias (a bool).

    Attributes:
        weight: (E, d_in, d_out).
        bias: (E, d_out) or ``None``.

    Raises:
        ConfigError: an argument outside its accepted range; the message names it and its value.

    Example:
        >>> bank = LinearExperts(n_modules=4, d_in=8, d_out=3)
        >>> bank.run_all(torch.randn(5, 8)).shape
        torch.Size([4, 5, 3])
    """

    strategies = STRATEGIES

    def __init__(self, *, n_modules: int, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        for name, value in (("n_modules", n_modules), ("d_in", d_in), ("d_out", d_out)):
            _check_size(name, value)
        if not isinstance(bias, bool):
            raise ConfigError(f"bias must be a bool, got bias={bias!r}")
        self.n_modules, self.d_in, self.d_out = n_modules, d_in, d_out
        self.weight = nn.Parameter(torch.empty(n_modules, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(n_modules, d_out)) if bias else None
        _init_stacked(self.weight, self.bias, d_in)

    def run_sorted(self, x_sorted: Tensor, groups: Groups, strategy: str) -> Tensor:
        _check_strategy(self, strategy)
        if strategy == "grouped_mm":
            y = grouped_mm(x_sorted, self.weight, groups.offsets)
            return y if self.bias is None else y.add_(self.bias.index_select(0, groups.module_ids))
        return run_chunks(self.expert_fns(), x_sorted, groups)

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
        n_modules: number of modules E, a positive int.
        d_in: input features, a positive int.
        d_hidden: hidden features, a positive int.
        d_out: output features, a positive int.
        activation: elementwise nonlinearity between the layers, a callable (default ``torch.relu``).

    Attributes:
        w1: (E, d_in, d_hidden). b1: (E, d_hidden). w2: (E, d_hidden, d_out). b2: (E, d_out).

    Raises:
        ConfigError: an argument outside its accepted range; the message names it and its value.

    Example:
        >>> bank = MLPExperts(n_modules=4, d_in=8, d_hidden=16, d_out=3)
        >>> bank.run_all(torch.randn(5, 8)).shape
        torch.Size([4, 5, 3])
    """

    strategies = STRATEGIES

    def __init__(
        self,
        *,
        n_modules: int,
        d_in: int,
        d_hidden: int,
        d_out: int,
        activation: Callable[[Tensor], Tensor] = torch.relu,
    ):
        super().__init__()
        for name, value in (("n_modules", n_modules), ("d_in", d_in), ("d_hidden", d_hidden), ("d_out", d_out)):
            _check_size(name, value)
        if not callable(activation):
            raise ConfigError(f"activation must be a callable (Tensor -> Tensor), got activation={activation!r}")
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
        return run_chunks(self.expert_fns(), x_sorted, groups)

    @property
    def overflow_ok(self) -> bool:  # type: ignore[override]
        return _is_relu(self.activation)

    def run_bucketed(self, x_slots: Tensor, groups: Groups) -> Tensor:
        if _is_relu(self.activation):
            return bucketed_chain(x_slots, groups, self.w1, self.b1, self.w2, self.b2)
        # any other activation: autograd through one bmm per layer (one tier of all modules holds every row)
        (tier,) = groups.tiers
        assert tier.span == (0, self.n_modules), "several tiers need a ReLU MLP"
        e, p = tier.n_modules, tier.capacity
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
        modules: the M modules, a non-empty sequence of ``nn.Module`` (an ``nn.ModuleList`` too); each
            maps (n, *in) -> (n, *out) with the same ``*out`` for all.
        d_in: ``None`` or the input feature size, checked by :class:`~modnets.routing.ModularLayer` when
            given.
        d_out: ``None`` or the output feature size.

    Raises:
        ConfigError: an argument outside its accepted range; the message names it and its value.

    Example:
        >>> bank = ModuleListExperts(modules=[nn.Linear(8, 3), nn.Linear(8, 3)], d_in=8, d_out=3)
        >>> bank.run_all(torch.randn(5, 8)).shape
        torch.Size([2, 5, 3])
    """

    strategies = ("chunks",)

    def __init__(self, *, modules: Sequence[nn.Module], d_in: int | None = None, d_out: int | None = None):
        super().__init__()
        if not isinstance(modules, Iterable):  # e.g. one module instead of a list of them
            raise ConfigError(f"modules must be a non-empty sequence of nn.Module, got {type(modules).__name__}")
        modules = list(modules)
        if not modules or not all(isinstance(m, nn.Module) for m in modules):
            raise ConfigError(
                f"modules must be a non-empty sequence of nn.Module, got {[type(m).__name__ for m in modules]}"
            )
        _check_size("d_in", d_in, optional=True)
        _check_size("d_out", d_out, optional=True)
        self.experts = nn.ModuleList(modules)
        self.n_modules, self.d_in, self.d_out = len(modules), d_in, d_out

    def run_sorted(self, x_sorted: Tensor, groups: Groups, strategy: str) -> Tensor:
        _check_strategy(self, strategy)
        return run_chunks(self.expert_fns(), x_sorted, groups)

    def expert_fns(self) -> list[Callable[[Tensor], Tensor]]:
        return list(self.experts)
