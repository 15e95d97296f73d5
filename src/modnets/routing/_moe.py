"""``MoE``: a mixture-of-experts layer as practitioners use it, and its two auxiliary losses.

A :class:`MoE` routes each row of its input to k experts with a gated router (the router's weights are
differentiable, so the task loss trains it by backprop), adds optional shared experts that see every row,
and returns a plain tensor, so that it composes in ``nn.Sequential``. The routing of a call and its
auxiliary losses are returned by ``return_route=True``, or read afterwards from :attr:`MoE.last_route`
and :meth:`MoE.aux_losses` (see there for what is kept between calls).

The auxiliary losses, for a route over M modules with B rows and k picks per row:

- :func:`switch_balance_loss`: ``M * sum_e f_e * P_e`` (Switch Transformer, Fedus et al. 2021; GShard),
  ``f_e`` the share of the B * k picks that went to expert e (a count, no gradient) and ``P_e`` the batch
  mean of the router's probability of e (differentiable); 1 when routing is uniform, up to M when it
  has collapsed onto one expert;
- :func:`router_z_loss`: ``mean_rows logsumexp(logits)^2`` (ST-MoE, Zoph et al. 2022), keeping the
  router's logits small so that the softmax stays numerically tame.

Both are averaged over the route's layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._dispatch import as_bank
from ._experts import ExpertBank
from ._layer import ModularLayer
from ._router import Router, RouteResult, refuse_tracing

__all__ = ["MoE", "MoEOutput", "router_z_loss", "switch_balance_loss"]


def switch_balance_loss(route: RouteResult) -> Tensor:
    """The Switch / GShard load-balancing loss ``M * sum_e f_e * P_e``, averaged over layers.

    ``f_e`` counts the picks (each of the B * k picks weighs 1, whatever its gate weight), so it is the
    fraction of dispatched rows of the paper for k = 1 and its per-pick share for k > 1.

    Args:
        route: choice (B, L, k), probs (B, L, M).

    Returns:
        () the loss: 1 for uniform routing, M when every pick and all probability go to one expert.
    """
    m = route.probs.shape[-1]
    with torch.no_grad():
        counts = torch.zeros_like(route.probs).scatter_add_(
            -1, route.choice, torch.ones_like(route.choice, dtype=route.probs.dtype)
        )  # (B, L, M)
        share = counts.sum(0) / counts.sum((0, 2)).clamp_min(1.0)[:, None]  # (L, M)
    return m * (share * route.probs.mean(0)).sum(-1).mean()


def router_z_loss(route: RouteResult) -> Tensor:
    """The ST-MoE router z-loss ``mean_rows logsumexp(logits)^2``, averaged over layers.

    Args:
        route: a route with logits (B, L, M), as every :class:`Router` returns.

    Returns:
        () the loss, differentiable in the logits.

    Raises:
        ConfigError: the route has no logits (built by hand).
    """
    if route.logits is None:
        raise ConfigError("router_z_loss needs the router's logits, but route.logits is None")
    return torch.logsumexp(route.logits, dim=-1).pow(2).mean()


class MoEOutput(NamedTuple):
    """What :meth:`MoE.forward` returns with ``return_route=True``.

    Attributes:
        output: (..., d_out) the layer's output.
        route: the routing (L = 1), over the N rows of the input flattened to (N, d_in).
        losses: the weighted auxiliary terms of :meth:`MoE.aux_losses`.
    """

    output: Tensor
    route: RouteResult
    losses: dict[str, Tensor]


class MoE(nn.Module):
    """A mixture-of-experts layer: ``shared(x) + sum_j w_j(x) * expert_{c_j(x)}(x)`` over k gated picks.

    Args:
        experts: the expert bank (``MLPExperts``, ``LinearExperts``, ...) or a sequence of modules.
        router: a :class:`Router` over the experts whose picks carry differentiable weights: a hard mode
            with a ``gate``, ``"gumbel"`` or ``"soft"``. (Unweighted routers are trained by a router
            objective through ``log_prob``; use :class:`ModularLayer` for them.)
        k: experts per row; ``None`` takes ``router.k`` (all M for a soft router).
        shared_experts: a module applied to every row and added to the routed output (DeepSeekMoE's
            shared experts; several of them are one module, e.g. an MLP of their total width), or ``None``.
        balance_coef: weight of :func:`switch_balance_loss` in :meth:`aux_losses` (0 leaves it out).
        z_coef: weight of :func:`router_z_loss` in :meth:`aux_losses` (0 leaves it out).
        strategy: the dispatch strategy (see :class:`ModularLayer`).

    Attributes:
        last_route: the :class:`RouteResult` of the latest forward call (``None`` before the first). It is
            replaced by every call and holds that call's autograd graph of the router until then; it is
            what :meth:`aux_losses` reads when no route is passed, so that the layer can sit inside
            ``nn.Sequential``. ``return_route=True`` returns the route and the losses directly instead.

    Raises:
        ConfigError: an argument outside its accepted range; a router without weights.

    Example:
        >>> from modnets.routing import MLPExperts, Router
        >>> moe = MoE(experts=MLPExperts(n_modules=4, d_in=8, d_hidden=16, d_out=8),
        ...           router=Router(n_modules=4, d_in=8, mode="topk", k=2, gate="softmax_topk"))
        >>> net = nn.Sequential(nn.Linear(3, 8), moe, nn.Linear(8, 1))
        >>> y = net(torch.randn(5, 3))
        >>> sorted(moe.aux_losses())  # from the forward call above
        ['loss_balance', 'loss_z']
    """

    def __init__(
        self,
        *,
        experts: ExpertBank | Sequence[nn.Module],
        router: Router,
        k: int | None = None,
        shared_experts: nn.Module | None = None,
        balance_coef: float = 0.01,
        z_coef: float = 0.001,
        strategy: str = "auto",
    ):
        super().__init__()
        if not isinstance(router, Router):
            raise ConfigError(f"router must be a Router, got router={type(router).__name__}")
        if router.n_layers != 1:
            raise ConfigError(f"an MoE routes one layer, so router.n_layers must be 1, got {router.n_layers}")
        if router.gate is None and router.mode not in ("soft", "gumbel"):
            raise ConfigError(
                f"an MoE trains its router by backprop, so the router's picks need weights: give the Router a "
                f"gate (one of 'softmax_topk', 'topk_softmax', 'sigmoid') or mode 'soft' / 'gumbel'; got "
                f"mode={router.mode!r}, gate=None"
            )
        if shared_experts is not None and not isinstance(shared_experts, nn.Module):
            raise ConfigError(f"shared_experts must be None or an nn.Module, got {type(shared_experts).__name__}")
        for name, value in (("balance_coef", balance_coef), ("z_coef", z_coef)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"{name} must be a number >= 0, got {name}={value!r}")
        bank = as_bank(experts)
        if k is None:
            k = bank.n_modules if router.mode == "soft" else router.k
        self.layer = ModularLayer(modules=bank, router=router, k=k, aggregate="sum", strategy=strategy)
        self.shared_experts = shared_experts
        self.balance_coef, self.z_coef = float(balance_coef), float(z_coef)
        self.last_route: RouteResult | None = None

    @property
    def experts(self) -> ExpertBank:
        """The routed experts."""
        return self.layer.experts

    @property
    def router(self) -> Router:
        """The router."""
        return self.layer.router

    def forward(
        self,
        x: Tensor,
        *,
        task: Tensor | None = None,
        generator: torch.Generator | None = None,
        mode: str | None = None,
        return_route: bool = False,
    ) -> Tensor | MoEOutput:
        """Route every row to its experts and mix their outputs.

        Args:
            x: (..., d_in) rows, e.g. (B, d_in) or (B, T, d_in) tokens, for a bank with a known ``d_in``
                (the leading dimensions are flattened into N rows and restored); (B, *in) otherwise.
            task: (B,) long task ids for a router built with ``n_tasks``; repeated over x's other leading
                dimensions.
            generator: random source of the router.
            mode: routing mode for this call instead of the router's own.
            return_route: return :class:`MoEOutput` (output, route, losses) instead of the output alone.

        Returns:
            (..., d_out) the output, or :class:`MoEOutput` with ``return_route=True``.

        Raises:
            ShapeError: x or task of the wrong shape.
            ConfigError: a call under ``torch.jit.trace``.
        """
        refuse_tracing("MoE")
        bank = self.layer.experts
        if not isinstance(x, Tensor) or x.dim() < 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"x must have shape (..., d_in) with a batch dimension, got {shape}")
        lead = x.shape[:-1] if bank.d_in is not None else x.shape[:1]
        rows = x.reshape(-1, x.shape[-1]) if bank.d_in is not None else x
        if task is not None and len(lead) > 1:
            if not isinstance(task, Tensor) or task.shape != lead[:1]:
                shape = tuple(task.shape) if isinstance(task, Tensor) else type(task).__name__
                raise ShapeError(f"task must have shape (batch={lead[0]},), got {shape}")
            task = task.view(-1, *([1] * (len(lead) - 1))).expand(lead).reshape(-1)
        out, route = self.layer(rows, task=task, generator=generator, mode=mode)
        out = out.reshape(*lead, *out.shape[1:])
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        self.last_route = route
        if return_route:
            return MoEOutput(out, route, self.aux_losses(route))
        return out

    def aux_losses(self, route: RouteResult | None = None) -> dict[str, Tensor]:
        """The weighted auxiliary loss terms, to add to the task loss.

        Args:
            route: the route to score; ``None`` reads :attr:`last_route` (the latest forward call).

        Returns:
            ``{"loss_balance": balance_coef * switch_balance_loss, "loss_z": z_coef * router_z_loss}``,
            leaving out a term whose coefficient is 0; each () and differentiable in the router.

        Raises:
            ConfigError: no route given and no forward call made yet.
        """
        if route is None:
            route = self.last_route
        if route is None:
            raise ConfigError("aux_losses() reads the route of the latest forward call, but none was made yet")
        terms: dict[str, Tensor] = {}
        if self.balance_coef:
            terms["loss_balance"] = self.balance_coef * switch_balance_loss(route)
        if self.z_coef:
            terms["loss_z"] = self.z_coef * router_z_loss(route)
        return terms

    def extra_repr(self) -> str:
        return f"k={self.layer.k}, balance_coef={self.balance_coef}, z_coef={self.z_coef}"
