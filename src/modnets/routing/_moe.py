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

Capacity and routing schemes (see :mod:`modnets.routing._capacity` for the placement order):

- dropless (the default, ``capacity_factor=None``): every expert runs on all its picks;
- token choice with a capacity (``capacity_factor=c``): each expert runs on at most
  ``C = ceil(c * N * k / E)`` picks per call; an overflowing pick is dropped (``overflow="drop"``,
  GShard: it adds nothing, and the row passes only through the shared experts and whatever residual the
  caller adds) or rerouted to its row's next-best expert with room (``overflow="reroute"``);
- expert choice (``routing="expert_choice"``, Zhou et al. 2022): each expert takes its top-C rows by the
  router's probability, ``C = ceil(c * N * k / E)`` with c = 1 by default, so every expert runs on exactly
  C rows and a row on 0 to E experts.

Loss-free balancing (DeepSeek-V3, ``bias_rate > 0``): a per-expert bias is added to the router's logits
for choosing the top-k (never for the gate weights) and, after each forward call in training mode, moves
every expert towards the mean load: ``bias_e += bias_rate * sign(mean_load - load_e)``, with ``load_e``
the picks the router sent to expert e in that call (before any capacity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._capacity import ExpertChoice, Overflow, assign_capacity, expert_capacity, expert_choice
from ._dispatch import as_bank, dispatch
from ._experts import ExpertBank
from ._layer import ModularLayer
from ._router import Router, RouteResult, refuse_tracing

__all__ = ["OVERFLOWS", "ROUTINGS", "MoE", "MoEOutput", "router_z_loss", "switch_balance_loss"]

#: What ``MoE(capacity_factor=...)`` does with a pick whose expert is full.
OVERFLOWS = ("drop", "reroute")
#: Who chooses: each row its k experts, or each expert its C rows.
ROUTINGS = ("token_choice", "expert_choice")


def switch_balance_loss(route: RouteResult) -> Tensor:
    """The Switch / GShard load-balancing loss ``M * sum_e f_e * P_e``, averaged over layers.

    ``f_e`` counts the picks (each of the B * k picks weighs 1, whatever its gate weight), so it is the
    fraction of dispatched rows of the paper for k = 1 and its per-pick share for k > 1. In soft mode, where
    every row picks every module (k = M with weights), counts carry nothing, and ``f_e`` is the batch's mean
    weight of module e instead.

    Args:
        route: choice (B, L, k), probs (B, L, M).

    Returns:
        () the loss: 1 for uniform routing, M when every pick and all probability go to one expert.
    """
    m = route.probs.shape[-1]
    with torch.no_grad():
        if route.weights is not None and route.choice.shape[-1] == m:  # soft: every module, weighted
            counts = route.dense()
        else:
            counts = torch.zeros_like(route.probs).scatter_add_(
                -1, route.choice, torch.ones_like(route.choice, dtype=route.probs.dtype)
            )  # (B, L, M)
        share = counts.sum(0) / counts.sum((0, 2)).clamp_min(1e-12)[:, None]  # (L, M)
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
        route: the router's routing (L = 1), over the N rows of the input flattened to (N, d_in), before
            any capacity. Under expert choice every expert is listed (choice (N, 1, E), in order) with the
            weight it gave the row, 0 where it did not take the row.
        losses: the weighted auxiliary terms of :meth:`MoE.aux_losses`.
        overflow: what the capacity dropped and rerouted (:class:`~modnets.routing.Overflow`), or
            ``None`` when dropless or under expert choice.
        expert_choice: the rows each expert took (:class:`~modnets.routing.ExpertChoice`, (E, C)) under
            expert choice, else ``None``.
    """

    output: Tensor
    route: RouteResult
    losses: dict[str, Tensor]
    overflow: Overflow | None = None
    expert_choice: ExpertChoice | None = None


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
        balance_coef: weight of :func:`switch_balance_loss` in :meth:`aux_losses` (0 leaves it out; so does
            expert choice, balanced by construction).
        z_coef: weight of :func:`router_z_loss` in :meth:`aux_losses` (0 leaves it out).
        strategy: the dispatch strategy (see :class:`ModularLayer`).
        capacity_factor: ``None`` for dropless token choice; c > 0 for at most ``ceil(c * N * k / E)``
            picks per expert and call (the capacity of expert choice, where ``None`` means c = 1).
        overflow: ``"drop"`` or ``"reroute"``: what happens to a pick whose expert is full (needs
            ``capacity_factor``). A rerouted pick of a gated router gets the gate's weight of its new
            expert (the row's weights are computed anew over its final picks); under ``"gumbel"`` or
            ``"soft"`` it keeps its weight.
        routing: ``"token_choice"`` (each row picks k experts through the router) or
            ``"expert_choice"`` (each expert picks its C rows by the router's probabilities
            ``softmax(logits)``; the router then serves only its logits, so its mode and gate do not
            matter). Expert choice is a scheme of the layer, not of the router, because its result is not
            k picks per row, the convention every router result keeps; it looks at the whole batch, so a
            row's output depends on the other rows of the call.
        bias_rate: the step of the loss-free balancing bias (0 leaves it out; token choice only). The
            bias is the buffer :attr:`expert_bias`, saved in the ``state_dict``.

    Attributes:
        last_route: the :class:`RouteResult` of the latest forward call (``None`` before the first). It is
            replaced by every call and holds that call's autograd graph of the router until then; it is
            what :meth:`aux_losses` reads when no route is passed, so that the layer can sit inside
            ``nn.Sequential``. ``return_route=True`` returns the route and the losses directly instead.
        expert_bias: (E,) the loss-free balancing bias (a buffer), or ``None`` when ``bias_rate`` is 0.
            It steers which experts are picked, in training and evaluation alike, and is updated only in
            training mode.

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
        capacity_factor: float | None = None,
        overflow: str = "drop",
        routing: str = "token_choice",
        bias_rate: float = 0.0,
    ):
        super().__init__()
        if not isinstance(router, Router):
            raise ConfigError(f"router must be a Router, got router={type(router).__name__}")
        if router.n_layers != 1:
            raise ConfigError(f"an MoE routes one layer, so router.n_layers must be 1, got {router.n_layers}")
        if routing not in ROUTINGS:
            raise ConfigError(f"routing must be one of {ROUTINGS}, got routing={routing!r}")
        if capacity_factor is not None and (
            isinstance(capacity_factor, bool) or not isinstance(capacity_factor, int | float) or not capacity_factor > 0
        ):
            raise ConfigError(f"capacity_factor must be None or a number > 0, got capacity_factor={capacity_factor!r}")
        if overflow not in OVERFLOWS:
            raise ConfigError(f"overflow must be one of {OVERFLOWS}, got overflow={overflow!r}")
        if overflow != "drop" and (capacity_factor is None or routing == "expert_choice"):
            raise ConfigError(
                f"overflow={overflow!r} applies to token choice with a capacity; got capacity_factor="
                f"{capacity_factor!r}, routing={routing!r}"
            )
        if isinstance(bias_rate, bool) or not isinstance(bias_rate, int | float) or not bias_rate >= 0:
            raise ConfigError(f"bias_rate must be a number >= 0, got bias_rate={bias_rate!r}")
        if bias_rate and routing == "expert_choice":
            raise ConfigError(
                "bias_rate balances token choice; expert choice is balanced by construction, "
                f"got bias_rate={bias_rate!r}"
            )
        if router.picks != "plackett_luce":
            raise ConfigError(f"an MoE gates picks drawn from one distribution per row; got a router with "
                              f"picks={router.picks!r} (use it in a ModularLayer, trained by a router objective)")
        if routing == "token_choice" and router.gate is None and router.mode not in ("soft", "gumbel"):
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
        self.capacity_factor = None if capacity_factor is None else float(capacity_factor)
        self.overflow, self.routing, self.bias_rate = overflow, routing, float(bias_rate)
        self.register_buffer("expert_bias", torch.zeros(bank.n_modules) if bias_rate else None)
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
            mode: routing mode for this call instead of the router's own (token choice only).
            return_route: return :class:`MoEOutput` (output, route, losses, overflow, expert_choice)
                instead of the output alone.

        Returns:
            (..., d_out) the output, or :class:`MoEOutput` with ``return_route=True``.

        Raises:
            ShapeError: x or task of the wrong shape.
            ConfigError: a call under ``torch.jit.trace``; ``mode`` given under expert choice.
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
        overflow, chosen = None, None
        if self.routing == "expert_choice":
            if mode is not None:
                raise ConfigError(f"mode applies to token choice; this MoE routes by expert choice, got mode={mode!r}")
            out, route, chosen = self._expert_choice(rows, task)
        else:
            route = self.router(rows, task=task, generator=generator, mode=mode, bias=self.expert_bias)
            if self.expert_bias is not None and self.training:
                self._update_bias(route.choice)
            if self.capacity_factor is None:
                out = self.layer(rows, route).output
            else:
                used_mode = self.router.routing_mode() if mode is None else mode
                out, overflow = self._with_capacity(rows, route, used_mode)
        out = out.reshape(*lead, *out.shape[1:])
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        self.last_route = route
        if return_route:
            return MoEOutput(out, route, self.aux_losses(route), overflow, chosen)
        return out

    @torch.no_grad()
    def _update_bias(self, choice: Tensor) -> None:
        """Loss-free balancing: ``bias_e += rate * sign(mean_load - load_e)`` from the picks (N, 1, k)."""
        assert self.expert_bias is not None
        load = torch.bincount(choice.reshape(-1), minlength=self.experts.n_modules).to(self.expert_bias.dtype)
        self.expert_bias += self.bias_rate * torch.sign(load.mean() - load)

    def _with_capacity(self, rows: Tensor, route: RouteResult, mode: str) -> tuple[Tensor, Overflow]:
        """Token choice under the capacity: rows (N, d_in) -> output (N, d_out) and the overflow."""
        assert self.capacity_factor is not None
        choice, probs = route.choice[:, 0], route.probs[:, 0]  # (N, k), (N, E)
        n, k = choice.shape
        n_experts = self.experts.n_modules
        ranking = None
        if self.overflow == "reroute":
            # the order in which the router would have picked: its logits plus the balancing bias
            scores = probs.log() if route.logits is None else route.logits[:, 0]
            if self.expert_bias is not None:
                scores = scores + self.expert_bias.to(scores.dtype)
            ranking = torch.sort(scores.detach(), dim=-1, descending=True, stable=True).indices
        capacity = expert_capacity(n, k, n_experts, self.capacity_factor)
        over = assign_capacity(choice, probs.gather(-1, choice), capacity, n_experts, ranking=ranking)
        weights = route.weights[:, 0] if route.weights is not None else probs.new_ones(choice.shape)
        if over.rerouted_rows.numel() and self.router.gate is not None and mode not in ("soft", "gumbel"):
            assert route.logits is not None
            moved = torch.zeros(n, dtype=torch.bool, device=choice.device).index_fill(0, over.rerouted_rows, True)
            regated = self.router.gate_weights(route.logits[:, 0], over.choice)
            weights = torch.where(moved[:, None], regated, weights)
        picks = over.kept.reshape(-1).nonzero().squeeze(1)
        out = self._run_picks(
            rows,
            torch.div(picks, k, rounding_mode="floor"),
            over.choice.reshape(-1)[picks],
            weights.reshape(-1)[picks],
        )
        return out, over

    def _expert_choice(self, rows: Tensor, task: Tensor | None) -> tuple[Tensor, RouteResult, ExpertChoice]:
        """Each expert takes its top-C rows (N, d_in) by the router's probability; output (N, d_out)."""
        logits = self.router.layer_logits(rows, task=task)  # (N, E)
        probs = torch.softmax(logits, dim=-1)
        n, n_experts = probs.shape
        capacity = min(n, expert_capacity(n, self.layer.k, n_experts, self.capacity_factor or 1.0))
        chosen = expert_choice(probs, capacity)
        experts = torch.arange(n_experts, device=probs.device).repeat_interleave(capacity)  # (E * C,)
        taken, weights = chosen.rows.reshape(-1), chosen.weights.reshape(-1)
        out = self._run_picks(rows, taken, experts, weights)
        dense = probs.new_zeros(n, n_experts).index_put((taken, experts), weights)  # (N, E)
        every = torch.arange(n_experts, device=probs.device).expand(n, n_experts)
        route = RouteResult(every[:, None], probs.new_zeros(n), probs[:, None], dense[:, None], logits[:, None])
        return out, route, chosen

    def _run_picks(self, rows: Tensor, index: Tensor, experts: Tensor, weights: Tensor) -> Tensor:
        """Sum of ``weights[i] * expert_{experts[i]}(rows[index[i]])`` into each row: (P,) picks -> (N, d_out)."""
        y = dispatch(
            rows.index_select(0, index),
            experts[:, None],
            self.experts,
            weights=weights[:, None],
            strategy=self.layer.strategy,
        )  # (P, d_out)
        return y.new_zeros((rows.shape[0], *y.shape[1:])).index_add(0, index, y)

    def aux_losses(self, route: RouteResult | None = None) -> dict[str, Tensor]:
        """The weighted auxiliary loss terms, to add to the task loss.

        Args:
            route: the route to score; ``None`` reads :attr:`last_route` (the latest forward call).

        Returns:
            ``{"loss_balance": balance_coef * switch_balance_loss, "loss_z": z_coef * router_z_loss}``,
            leaving out a term whose coefficient is 0, and the balance term under expert choice (every expert
            takes C rows); each () and differentiable in the router.

        Raises:
            ConfigError: no route given and no forward call made yet.
        """
        if route is None:
            route = self.last_route
        if route is None:
            raise ConfigError("aux_losses() reads the route of the latest forward call, but none was made yet")
        terms: dict[str, Tensor] = {}
        if self.balance_coef and self.routing != "expert_choice":
            terms["loss_balance"] = self.balance_coef * switch_balance_loss(route)
        if self.z_coef:
            terms["loss_z"] = self.z_coef * router_z_loss(route)
        return terms

    def extra_repr(self) -> str:
        extra = "" if self.capacity_factor is None else f", capacity_factor={self.capacity_factor}"
        if self.capacity_factor is not None and self.routing == "token_choice":
            extra += f", overflow={self.overflow!r}"
        if self.routing != "token_choice":
            extra += f", routing={self.routing!r}"
        if self.bias_rate:
            extra += f", bias_rate={self.bias_rate}"
        return f"k={self.layer.k}, balance_coef={self.balance_coef}, z_coef={self.z_coef}{extra}"
