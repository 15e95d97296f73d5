"""``ModularLayer``: M modules, k of them chosen per example by a router, outputs summed or concatenated
(the layer of Kirsch et al. 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._dispatch import AGGREGATES, as_bank, dispatch
from ._experts import STRATEGIES, ExpertBank
from ._router import Router, RouteResult, refuse_tracing

__all__ = ["LayerOutput", "ModularLayer"]


class LayerOutput(NamedTuple):
    """What a :class:`ModularLayer` returns.

    Attributes:
        output: (B, d_out) for ``aggregate="sum"``, (B, k * d_out) for ``"concat"``.
        route: the :class:`RouteResult` used (L = 1): its ``log_prob`` and ``probs`` feed REINFORCE, EM
            and the routing diagnostics.
    """

    output: Tensor
    route: RouteResult


class ModularLayer(nn.Module):
    """A layer of M modules of which a router picks k per example.

    Hard routes run through the dispatch engine (each chosen module once, on exactly its rows); soft
    routes (k = M, every module on every row) run densely and are weighted by the router's probabilities.
    Whenever the route carries weights (soft, straight-through Gumbel, or a gated router's gate weights)
    each pick's output is multiplied by its weight, for every k including k = 1, so the layer's loss
    reaches the router by backprop; unweighted picks are summed or concatenated as they are.

    Args:
        modules: the module bank: an :class:`ExpertBank` (``MLPExperts``, ``LinearExperts``, ...) or a
            sequence / ``nn.ModuleList`` of arbitrary modules.
        router: the :class:`Router` choosing among the modules; its ``n_modules`` must equal M.
        k: modules per example, 1 <= k <= M; must equal ``router.k`` unless the router is soft.
        aggregate: ``"sum"`` (weighted sum of the picks' outputs) or ``"concat"`` (side by side, in pick
            order).
        layer: which layer of a multi-layer router routes this layer.
        strategy: dispatch strategy, ``"auto"`` or one of ``"grouped_mm"``, ``"padded_bmm"``, ``"chunks"``
            (see :func:`modnets.routing._dispatch.choose_strategy`).

    Example:
        >>> from modnets.routing import MLPExperts, Router
        >>> layer = ModularLayer(modules=MLPExperts(n_modules=4, d_in=8, d_hidden=16, d_out=8),
        ...                      router=Router(n_modules=4, d_in=8, mode="sample"))
        >>> out = layer(torch.randn(32, 8))
        >>> out.output.shape, out.route.log_prob.shape
        (torch.Size([32, 8]), torch.Size([32]))
    """

    def __init__(
        self,
        *,
        modules: ExpertBank | Sequence[nn.Module],
        router: Router,
        k: int = 1,
        aggregate: str = "sum",
        layer: int = 0,
        strategy: str = "auto",
    ):
        super().__init__()
        bank = as_bank(modules)
        m = bank.n_modules
        if not isinstance(router, nn.Module) or not hasattr(router, "n_modules"):
            raise ConfigError(f"router must be a Router, got {type(router).__name__}")
        if router.n_modules != m:
            raise ConfigError(f"router.n_modules={router.n_modules} must equal the number of modules M={m}")
        if not isinstance(k, int) or not 1 <= k <= m:
            raise ConfigError(f"k must satisfy 1 <= k <= M (number of modules M={m}), got k={k!r}")
        if router.mode != "soft" and router.k != k:
            raise ConfigError(f"k={k} must equal router.k={router.k} for a {router.mode!r} router")
        if aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if strategy != "auto" and strategy not in bank.strategies:
            raise ConfigError(f"strategy must be 'auto' or one of {bank.strategies} for this bank, got {strategy!r}")
        if not isinstance(layer, int) or not 0 <= layer < router.n_layers:
            raise ConfigError(f"layer must be in [0, {router.n_layers}) (router.n_layers), got {layer!r}")
        self.experts, self.router = bank, router
        self.k, self.aggregate, self.layer, self.strategy = k, aggregate, layer, strategy
        assert strategy in ("auto", *STRATEGIES)

    @property
    def n_modules(self) -> int:
        """M."""
        return self.experts.n_modules

    def forward(
        self,
        x: Tensor,
        route: RouteResult | Tensor | None = None,
        *,
        task: Tensor | None = None,
        generator: torch.Generator | None = None,
        mode: str | None = None,
    ) -> LayerOutput:
        """Route and run.

        Args:
            x: (B, d_in) inputs ((B, *in) for a bank of arbitrary modules).
            route: ``None`` to ask the router; a :class:`RouteResult` with L = 1 to use as is (no router
                call); or a long tensor (B, k') / (B, 1, k') of module ids, which the router scores (its
                ``log_prob`` is returned) and the layer evaluates.
            task: (B,) long task ids, passed to the router.
            generator: random source passed to the router.
            mode: routing mode for this call instead of the router's own (see :meth:`Router.forward`).

        Returns:
            :class:`LayerOutput` ``(output, route)``: output (B, d_out) for ``"sum"``, (B, k' * d_out) for
            ``"concat"``.

        Raises:
            ShapeError: x or route of the wrong shape.
            ConfigError: module ids out of range; a call under ``torch.jit.trace``.
        """
        refuse_tracing("ModularLayer")
        bank = self.experts
        if not isinstance(x, Tensor) or x.dim() < 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"x must have shape (batch, d_in{'=' + str(bank.d_in) if bank.d_in else ''}), got {shape}")
        if bank.d_in is not None and (x.dim() != 2 or x.shape[1] != bank.d_in):
            raise ShapeError(f"x must have shape (batch, d_in={bank.d_in}), got {tuple(x.shape)}")
        if route is None:
            route = self.router(x, layer=self.layer, task=task, generator=generator, mode=mode)
        elif isinstance(route, Tensor):
            route = self.router(x, layer=self.layer, task=task, choice=route, mode=mode)
        elif not isinstance(route, RouteResult):
            raise ConfigError(f"route must be None, a RouteResult or a long choice tensor, got {type(route).__name__}")
        choice = route.choice
        if choice.dim() != 3 or choice.shape[0] != x.shape[0] or choice.shape[1] != 1:
            raise ShapeError(
                f"route.choice must have shape (batch={x.shape[0]}, 1, k) for one layer, got {tuple(choice.shape)}"
            )
        if choice.shape[2] == bank.n_modules:
            return LayerOutput(self._dense(x, route), route)
        weights = None if route.weights is None else route.weights[:, 0]
        out = dispatch(x, choice[:, 0], bank, weights=weights, aggregate=self.aggregate, strategy=self.strategy)
        return LayerOutput(out, route)

    def _dense(self, x: Tensor, route: RouteResult) -> Tensor:
        """Every module on every row (soft routing, or k = M): one batched call, no dispatch."""
        ys = self.experts.run_all(x)  # (E, B, *out)
        if self.aggregate == "sum":
            w = route.dense()[:, 0].to(ys.dtype)  # (B, E)
            return torch.einsum("eb...,be->b...", ys, w)
        choice = route.choice[:, 0]  # (B, M) pick order
        ys = ys.transpose(0, 1)  # (B, E, *out)
        index = choice.view(*choice.shape, *([1] * (ys.dim() - 2))).expand(*choice.shape, *ys.shape[2:])
        picked = ys.gather(1, index)  # (B, M, *out)
        if route.weights is not None:
            picked = picked * route.weights[:, 0].view(*choice.shape, *([1] * (ys.dim() - 2))).to(ys.dtype)
        return picked.reshape(x.shape[0], -1, *picked.shape[3:])

    def extra_repr(self) -> str:
        return f"k={self.k}, aggregate={self.aggregate!r}, layer={self.layer}, strategy={self.strategy!r}"
