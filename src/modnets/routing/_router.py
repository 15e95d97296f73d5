"""Routers: policies p(a | x, phi) over module choices, factorised over layers (note seed 000).

A router scores the M modules of a layer with logits, from a learned table (static routing) or from the
layer's input ``z_t`` (dynamic routing), and turns them into a choice:

- ``"sample"``: k modules drawn from ``softmax(logits)`` without replacement (Gumbel-top-k);
- ``"argmax"`` / ``"topk"``: the k most probable modules (deterministic; ``"argmax"`` is the k = 1 name);
- ``"soft"``: every module, weighted by its probability (a dense weighted sum, differentiable);
- ``"gumbel"``: straight-through Gumbel-softmax: a sampled hard choice whose weights are exactly 1 in
  the forward pass and carry the gradient of ``softmax((logits + g) / tau)`` in the backward pass.

Gates. The hard modes ``"sample"``, ``"argmax"`` and ``"topk"`` pick modules without weights, so a layer's
output does not depend on the router's parameters and backprop leaves them untouched: such a router is
trained by a router objective of :mod:`modnets.train` (``Reinforce``, ``TopKBuffer``, ``generalized_em``)
through ``log_prob``. A ``gate`` gives the picks weights that are differentiable functions of the logits,
as mixture-of-experts layers do, and the layer's loss then trains the router by ordinary backprop. With
``c`` the k picks and ``p = softmax(logits)``:

- ``"softmax_topk"``: ``w_j = p[c_j]``, renormalised to ``p[c_j] / sum_i p[c_i]`` when ``normalize_gate``
  (GShard top-2, DeepSeek's ``norm_topk_prob``); unnormalised at k = 1 this is the Switch Transformer gate;
- ``"topk_softmax"``: ``w = softmax(logits[c])``, a softmax over the k kept logits only (Mixtral); equal in
  value to the renormalised ``"softmax_topk"``, computed without the other modules' logits;
- ``"sigmoid"``: ``w_j = sigmoid(logits[c_j])``, divided by their sum when ``normalize_gate`` (DeepSeek-V3).

A single renormalised weight is 1 whatever the logits and carries no gradient, so ``normalize_gate``
defaults to ``k > 1`` and ``"topk_softmax"`` needs k >= 2.

Choice bias. :meth:`Router.forward` takes a ``bias`` (M,) that is added to the logits for choosing the
picks only: the gate weights, ``probs``, ``log_prob`` and ``logits`` of the result ignore it (the
loss-free balancing of DeepSeek-V3, whose bias :class:`~modnets.routing.MoE` keeps and updates).

Evaluation. A router in eval mode (``router.eval()``) with mode ``"sample"`` or ``"gumbel"`` routes
deterministically, as ``"topk"`` (its k most probable modules, gated as in training), unless it was built
with ``sample_in_eval=True``. A ``mode=`` given to :meth:`Router.forward` always wins.

Picks (k > 1). How a router draws its k picks per layer is its ``picks``:

- ``"plackett_luce"`` (default): k distinct modules drawn without replacement from one
  ``softmax(logits)``, scored by the sequential (Plackett-Luce) probability of the ordered picks
  (:func:`plackett_luce_log_prob`); ``"argmax"`` / ``"topk"`` take the k most probable modules;
- ``"independent"``: k independent categoricals, one per pick slot, each with its own logits over all M
  modules (the K-of-M controller of Kirsch et al. 2018 and libmodular): slot j draws module ``c_j`` from
  ``softmax(logits_j)``, the same module may be picked by several slots (its outputs then add up), and
  ``log p = sum_j log softmax(logits_j)[c_j]``; ``"argmax"`` / ``"topk"`` take each slot's most probable
  module. Only the hard, ungated modes (``"sample"``, ``"argmax"``, ``"topk"``) draw this way.

Conventions (shared by every training algorithm and diagnostic):

- ``choice``: (B, L, k) long module ids, ``L`` = number of layers in the result (1 for one
  :meth:`Router.forward` call; :func:`stack_routes` joins per-layer results);
- ``log_prob``: (B,) log-probability of the whole choice under the policy, summed over layers; for k > 1
  the ordered picks are scored as the router's ``picks`` draws them (see above); 0 for ``"soft"``
  (nothing is drawn);
- ``probs``: (B, L, M) the full distribution ``softmax(logits)`` (temperature-free); for
  ``picks="independent"`` the mean of the k slots' distributions (the chance that a pick is module m);
- ``weights``: (B, L, k) the weight of each pick, or ``None`` for unweighted hard picks;
- ``logits``: (B, L, M) the router's raw logits (for the router z-loss), or ``None`` when unknown or when
  there are k rows of them (``picks="independent"``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError

__all__ = ["GATES", "MODES", "PICKS", "RouteResult", "Router", "plackett_luce_log_prob", "refuse_tracing",
           "stack_routes"]

MODES = ("sample", "argmax", "topk", "soft", "gumbel")
#: Gates of the hard modes (see the module docstring).
GATES = ("softmax_topk", "topk_softmax", "sigmoid")
#: How a router draws its k picks (see the module docstring).
PICKS = ("plackett_luce", "independent")
_GATED_MODES = ("sample", "argmax", "topk")


class RouteResult(NamedTuple):
    """A routing decision for a batch.

    Attributes:
        choice: (B, L, k) long module ids per layer (k = M in soft mode: every module, in order).
        log_prob: (B,) log p(choice | x) summed over layers and picks (0 in soft mode).
        probs: (B, L, M) the router's distribution over modules per layer.
        weights: (B, L, k) weight of each pick (soft: the probabilities; gumbel: straight-through
            weights, 1 in value; gated: the gate's weights), or ``None`` when the picks are unweighted.
        logits: (B, L, M) the router's logits, or ``None`` (a result built by hand).
    """

    choice: Tensor
    log_prob: Tensor
    probs: Tensor
    weights: Tensor | None = None
    logits: Tensor | None = None

    def dense(self) -> Tensor:
        """The choice as a dense weight per module: (B, L, M), zero for modules not picked."""
        w = self.weights if self.weights is not None else torch.ones_like(self.choice, dtype=self.probs.dtype)
        return torch.zeros_like(self.probs).scatter_add(-1, self.choice, w.to(self.probs.dtype))

    def layer(self, index: int) -> RouteResult:
        """The result of one layer (L = 1). ``log_prob`` stays the total over all layers."""
        sl = slice(index, index + 1)
        w = None if self.weights is None else self.weights[:, sl]
        logits = None if self.logits is None else self.logits[:, sl]
        return RouteResult(self.choice[:, sl], self.log_prob, self.probs[:, sl], w, logits)


def stack_routes(routes: Sequence[RouteResult]) -> RouteResult:
    """Join per-layer results along the layer axis; log-probabilities add up.

    Args:
        routes: results with the same B and k, e.g. one per layer.

    Returns:
        choice (B, sum L, k), log_prob (B,), probs (B, sum L, M), weights (B, sum L, k) or ``None``,
        logits (B, sum L, M) when every result has them, else ``None``.
    """
    if not routes:
        raise ConfigError("stack_routes needs at least one RouteResult, got none")
    weights = None
    if any(r.weights is not None for r in routes):
        weights = torch.cat(
            [r.weights if r.weights is not None else torch.ones_like(r.choice, dtype=r.probs.dtype) for r in routes],
            dim=1,
        )
    logits = None
    if all(r.logits is not None for r in routes):
        logits = torch.cat([r.logits for r in routes if r.logits is not None], dim=1)
    return RouteResult(
        torch.cat([r.choice for r in routes], dim=1),
        torch.stack([r.log_prob for r in routes]).sum(0),
        torch.cat([r.probs for r in routes], dim=1),
        weights,
        logits,
    )


def plackett_luce_log_prob(logits: Tensor, choice: Tensor, log_p: Tensor | None = None) -> Tensor:
    """Log-probability of drawing the ordered picks ``choice`` without replacement from ``softmax(logits)``.

    ``log p = sum_j [logits[c_j] - logsumexp(logits over modules not yet picked)]``; for k = 1 this is
    ``log_softmax(logits)[c_1]``.

    Args:
        logits: (..., M).
        choice: (..., k) long, distinct ids per row.
        log_p: (..., M) ``log_softmax(logits)`` when the caller has it: the first pick's term is read from
            it instead of computing a logsumexp over all M modules again.

    Returns:
        (...) the log-probability of each row's ordered picks.
    """
    first = choice[..., :1]
    if log_p is None:
        total = logits.gather(-1, first)[..., 0] - torch.logsumexp(logits, dim=-1)
    else:
        total = log_p.gather(-1, first)[..., 0]
    remaining = logits
    for j in range(1, choice.shape[-1]):
        remaining = remaining.scatter(-1, choice[..., j - 1 : j], float("-inf"))
        total = total + logits.gather(-1, choice[..., j : j + 1])[..., 0] - torch.logsumexp(remaining, dim=-1)
    return total


def refuse_tracing(component: str) -> None:
    """Raise when called under ``torch.jit.trace``: a trace records one batch's routing as constants.

    Raises:
        ConfigError: always while tracing, naming ``component``.
    """
    if torch.jit.is_tracing():
        raise ConfigError(
            f"{component} cannot be traced with torch.jit.trace: the trace would record this batch's routing "
            "(which modules run on which rows) as constants and replay it for every input; run the module "
            "eagerly, or trace the modules of the bank one by one"
        )


def _gate_weights(logits: Tensor, picks: Tensor, gate: str, normalize: bool, probs: Tensor | None = None) -> Tensor:
    """(B, k) gate weights of the picks (B, k) from the logits (B, M); see the module docstring. ``probs``:
    ``softmax(logits)`` when the caller has it (the ``"softmax_topk"`` gate reads it instead of a second
    softmax)."""
    if gate == "topk_softmax":
        return torch.softmax(logits.gather(-1, picks), dim=-1)
    if gate == "softmax_topk":
        w = (torch.softmax(logits, dim=-1) if probs is None else probs).gather(-1, picks)
    else:
        w = torch.sigmoid(logits.gather(-1, picks))
    return w / w.sum(-1, keepdim=True) if normalize else w


def _gumbel(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None and like.shape == shape:
        u = torch.rand_like(like)  # traced by torch.compile at any batch size (a generator argument is not)
    else:
        u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
    tiny = torch.finfo(like.dtype).tiny
    neg_log_u = (-torch.log(u.clamp_min(tiny))).clamp_min(tiny)  # in (0, inf)
    return -torch.log(neg_log_u)


class Router(nn.Module):
    """A policy over the M modules of each of L layers.

    Static routers learn a logits table per layer (and per task when ``n_tasks`` is given); dynamic
    routers compute the logits of layer ``l`` from that layer's input ``z_l`` with their own linear map
    (``hidden=None``) or two-layer MLP, plus a learned per-task bias when ``n_tasks`` is given.

    How the router learns depends on its mode and gate (see the module docstring):

    - by backprop through the layer's loss: ``"soft"``, ``"gumbel"``, and the hard modes with a ``gate``;
    - by a router objective only (``modnets.train.Reinforce``, ``TopKBuffer``, ``generalized_em``, which
      use ``log_prob``): ``"sample"``, ``"argmax"`` and ``"topk"`` without a gate, whose picks are
      unweighted, so the layer's output carries no gradient to the router.

    Args:
        n_modules: M, modules per layer.
        n_layers: L, layers routed by this router.
        d_in: input features of the dynamic router (the same for every layer); ignored when static.
        mode: ``"sample"``, ``"argmax"``, ``"topk"``, ``"soft"`` or ``"gumbel"`` (see module docstring).
        k: modules picked per example and layer, 1 <= k <= M (ignored by ``"soft"``, which uses all M).
        static: input-independent routing (a logits table).
        tau: Gumbel-softmax temperature (``"gumbel"`` mode only); may be set or annealed during training.
        n_tasks: number of task ids, to route per task (static: one table per task; dynamic: a bias).
        hidden: hidden width of the dynamic router's MLP, or ``None`` for a linear map.
        tau_min: floor of :meth:`anneal_tau`.
        anneal_rate: decay rate r of :meth:`anneal_tau`: ``tau = max(tau_min, tau0 * exp(-r * step))``.
        gate: ``None`` (unweighted picks) or one of :data:`GATES`: ``"softmax_topk"``, ``"topk_softmax"``,
            ``"sigmoid"``, for the modes ``"sample"``, ``"argmax"`` and ``"topk"``; the picks' weights are
            then differentiable gate weights.
        normalize_gate: whether the ``"softmax_topk"`` and ``"sigmoid"`` gates divide the k weights by
            their sum; ``None`` means ``k > 1`` (at k = 1 the weight would be 1, with no gradient).
        sample_in_eval: whether a ``"sample"`` or ``"gumbel"`` router keeps sampling in eval mode; by
            default it routes as ``"topk"`` there (deterministically).
        picks: how the k picks are drawn: ``"plackett_luce"`` (k distinct modules without replacement from
            one distribution) or ``"independent"`` (k independent categoricals with their own logits, as
            Kirsch et al.; modes ``"sample"``, ``"argmax"``, ``"topk"`` without a gate). See the module
            docstring.

    Raises:
        ConfigError: an argument outside its accepted range or set; the message names it and its value.

    Example:
        >>> router = Router(n_modules=4, n_layers=2, d_in=8, mode="sample", k=2)
        >>> r = router(torch.randn(5, 8), layer=1)
        >>> r.choice.shape, r.log_prob.shape, r.probs.shape
        (torch.Size([5, 1, 2]), torch.Size([5]), torch.Size([5, 1, 4]))
        >>> gated = Router(n_modules=4, d_in=8, mode="topk", k=2, gate="softmax_topk")
        >>> w = gated(torch.randn(5, 8)).weights  # (5, 1, 2), renormalised, with a gradient to the router
        >>> torch.allclose(w.sum(-1), torch.ones(5, 1)), w.requires_grad
        (True, True)
        >>> kirsch = Router(n_modules=4, d_in=8, k=2, picks="independent")  # 2 categoricals, repeats allowed
        >>> kirsch.layer_logits(torch.randn(5, 8)).shape, kirsch.choices().shape
        (torch.Size([5, 2, 4]), torch.Size([16, 2]))
    """

    def __init__(
        self,
        *,
        n_modules: int,
        n_layers: int = 1,
        d_in: int | None = None,
        mode: str = "sample",
        k: int = 1,
        static: bool = False,
        tau: float = 1.0,
        n_tasks: int | None = None,
        hidden: int | None = None,
        tau_min: float = 0.1,
        anneal_rate: float = 1e-4,
        gate: str | None = None,
        normalize_gate: bool | None = None,
        sample_in_eval: bool = False,
        picks: str = "plackett_luce",
    ):
        super().__init__()
        for name, value in (("n_modules", n_modules), ("n_layers", n_layers)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(k, int) or not 1 <= k <= n_modules:
            raise ConfigError(f"k must satisfy 1 <= k <= M (n_modules={n_modules}), got k={k!r}")
        if not static and (not isinstance(d_in, int) or d_in < 1):
            raise ConfigError(f"a dynamic router (static=False) needs d_in, a positive int; got d_in={d_in!r}")
        if n_tasks is not None and (not isinstance(n_tasks, int) or n_tasks < 1):
            raise ConfigError(f"n_tasks must be None or a positive int, got {n_tasks!r}")
        if hidden is not None and (not isinstance(hidden, int) or hidden < 1):
            raise ConfigError(f"hidden must be None or a positive int, got {hidden!r}")
        if not tau > 0 or not tau_min > 0:
            raise ConfigError(f"tau and tau_min must be > 0, got tau={tau!r}, tau_min={tau_min!r}")
        self.gate, self.normalize_gate = _check_gate(gate, normalize_gate, mode, k)
        if not isinstance(sample_in_eval, bool):
            raise ConfigError(f"sample_in_eval must be a bool, got sample_in_eval={sample_in_eval!r}")
        self.sample_in_eval = sample_in_eval
        if picks not in PICKS:
            raise ConfigError(f"picks must be one of {PICKS}, got picks={picks!r}")
        if picks == "independent" and (mode not in _GATED_MODES or gate is not None):
            raise ConfigError(f"picks='independent' draws with the modes {_GATED_MODES} and no gate; got "
                              f"mode={mode!r}, gate={gate!r}")
        self.picks = picks
        # rows of logits per layer: one distribution, or one per pick slot
        heads = k if picks == "independent" else 1
        self.n_modules, self.n_layers, self.mode, self.k = n_modules, n_layers, mode, k
        self.static, self.n_tasks = static, n_tasks
        self.d_in = None if static else d_in
        self.tau, self.tau0, self.tau_min, self.anneal_rate = float(tau), float(tau), float(tau_min), anneal_rate
        if static:
            # (tasks, L, heads * M); zeros = uniform routing at the start
            self.logits = nn.Parameter(torch.zeros(n_tasks or 1, n_layers, heads * n_modules))
            self.nets = None
            self.task_bias = None
        else:
            assert d_in is not None
            self.logits = None
            self.nets = nn.ModuleList(
                [
                    nn.Linear(d_in, heads * n_modules)
                    if hidden is None
                    else nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, heads * n_modules))
                    for _ in range(n_layers)
                ]
            )
            self.task_bias = nn.Parameter(torch.zeros(n_tasks, n_layers, heads * n_modules)) if n_tasks else None

    # ------------------------------------------------------------------ temperature
    def anneal_tau(self, step: int) -> float:
        """Set and return ``tau = max(tau_min, tau0 * exp(-anneal_rate * step))`` (Jang et al. 2017)."""
        self.tau = max(self.tau_min, self.tau0 * math.exp(-self.anneal_rate * step))
        return self.tau

    # ------------------------------------------------------------------ logits
    def layer_logits(self, x: Tensor | None = None, *, layer: int = 0, task: Tensor | None = None) -> Tensor:
        """Logits of one layer.

        Args:
            x: (B, d_in) the layer's input z_l; required by dynamic routers; a static router only reads
                its batch size (any shape (B, ...)).
            layer: layer index in [0, n_layers).
            task: (B,) long task ids in [0, n_tasks), when the router has ``n_tasks``.

        Returns:
            (B, M), or (B, k, M) for ``picks="independent"`` (one row per pick slot); B = 1 for a static
            router given neither ``x`` nor ``task``.

        Raises:
            ShapeError: x or task of the wrong shape.
            ConfigError: layer or task ids out of range, task given to a router without ``n_tasks``.
        """
        if not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise ConfigError(f"layer must be an int in [0, {self.n_layers}) (n_layers={self.n_layers}), got {layer!r}")
        batch = self._check_inputs(x, task)
        if self.static:
            assert self.logits is not None
            table = self.logits[:, layer]  # (tasks, heads * M)
            logits = table[0].expand(batch, table.shape[-1]) if task is None else table.index_select(0, task)
        else:
            assert self.nets is not None and x is not None
            logits = self.nets[layer](x)
            if self.task_bias is not None and task is not None:
                logits = logits + self.task_bias[:, layer].index_select(0, task)
        return logits.unflatten(-1, (self.k, self.n_modules)) if self.picks == "independent" else logits

    def _check_inputs(self, x: Tensor | None, task: Tensor | None) -> int:
        batch = None
        if x is not None:
            if not isinstance(x, Tensor) or x.dim() < 1:
                raise ShapeError(f"x must be a tensor of shape (batch, d_in), got {type(x).__name__}")
            if not self.static and (x.dim() != 2 or x.shape[1] != self.d_in):
                raise ShapeError(f"x must have shape (batch, d_in={self.d_in}), got {tuple(x.shape)}")
            batch = x.shape[0]
        elif not self.static:
            raise ShapeError(f"a dynamic router needs x of shape (batch, d_in={self.d_in}), got None")
        if task is not None:
            if self.n_tasks is None:
                raise ConfigError("task ids were given, but this router was built without n_tasks")
            if not isinstance(task, Tensor) or task.dim() != 1 or (batch is not None and task.shape[0] != batch):
                shape = tuple(task.shape) if isinstance(task, Tensor) else type(task).__name__
                raise ShapeError(f"task must have shape (batch={batch if batch is not None else 'B'},), got {shape}")
            if task.dtype != torch.long or (task.numel() and (int(task.min()) < 0 or int(task.max()) >= self.n_tasks)):
                raise ConfigError(f"task must hold long ids in [0, {self.n_tasks}) (n_tasks={self.n_tasks})")
            batch = task.shape[0]
        return 1 if batch is None else batch

    # ------------------------------------------------------------------ routing
    def forward(
        self,
        x: Tensor | None = None,
        *,
        layer: int = 0,
        task: Tensor | None = None,
        generator: torch.Generator | None = None,
        choice: Tensor | None = None,
        mode: str | None = None,
        bias: Tensor | None = None,
    ) -> RouteResult:
        """Route one layer.

        Args:
            x: (B, d_in) the layer's input z_l (dynamic routers); static routers only read its batch size.
            layer: layer index in [0, n_layers).
            task: (B,) long task ids (routers built with ``n_tasks``).
            generator: random source for ``"sample"`` and ``"gumbel"``.
            choice: (B, k') or (B, 1, k') long ids to score instead of choosing (for EM and for evaluating a
                given assignment); ``log_prob`` is then the policy's log-probability of these picks and
                ``weights`` is ``None``, or the gate's weights of these picks for a gated router
                (``"soft"``: the probabilities of the given picks); k' = k for ``picks="independent"``
                (one pick per slot).
            mode: route this call in another mode than the router's own (e.g. ``"argmax"`` to evaluate a
                router trained by sampling); ``None`` keeps the router's own, which in eval mode is
                ``"topk"`` for a ``"sample"`` or ``"gumbel"`` router built without ``sample_in_eval``.
            bias: (M,) added to the logits (and to the Gumbel-perturbed logits) for choosing the picks
                only; every field of the result is computed without it. Ignored by ``"soft"`` (which
                picks every module) and when ``choice`` is given.

        Returns:
            :class:`RouteResult` with L = 1: choice (B, 1, k), log_prob (B,), probs (B, 1, M),
            weights (B, 1, k) or ``None``, logits (B, 1, M) (``None`` for ``picks="independent"``).

        Raises:
            ConfigError: an unknown mode (or one that ``picks="independent"`` does not draw in), bad ids,
                or a call under ``torch.jit.trace``.
            ShapeError: x, task or choice of the wrong shape.
        """
        refuse_tracing("Router")
        if mode is not None and mode not in MODES:
            raise ConfigError(f"mode must be None or one of {MODES}, got {mode!r}")
        mode = self.routing_mode() if mode is None else mode
        if bias is not None and (not isinstance(bias, Tensor) or bias.shape != (self.n_modules,)):
            shape = tuple(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
            raise ShapeError(f"bias must have shape (n_modules={self.n_modules},), got {shape}")
        if self.picks == "independent" and mode not in _GATED_MODES:
            raise ConfigError(f"a picks='independent' router routes in the modes {_GATED_MODES}, got mode={mode!r}")
        logits = self.layer_logits(x, layer=layer, task=task)  # (B, M), or (B, k, M) for independent picks
        # the picks are chosen by the biased logits; weights and probabilities use the logits alone
        chooser = logits.detach() if bias is None else logits.detach() + bias.to(logits.dtype)
        if self.picks == "independent":
            return self._independent(logits, chooser, choice, mode, generator)
        log_p = F.log_softmax(logits, dim=-1)
        probs = log_p.exp()
        batch = logits.shape[0]
        if choice is not None:
            return self._score(logits, log_p, probs, choice, batch, mode)
        if mode == "soft":
            picks = torch.arange(self.n_modules, device=logits.device).expand(batch, self.n_modules)
            return RouteResult(picks[:, None], logits.new_zeros(batch), probs[:, None], probs[:, None], logits[:, None])
        weights = None
        if mode in ("argmax", "topk"):
            picks = chooser.topk(self.k, dim=-1).indices
        else:
            # Gumbel-top-k: an exact draw of k picks without replacement from softmax(logits)
            noise = _gumbel(logits.shape, logits, generator)
            perturbed = logits + noise
            picks = (chooser + noise).topk(self.k, dim=-1).indices
            if mode == "gumbel":
                picked = torch.softmax(perturbed / self.tau, dim=-1).gather(-1, picks)
                weights = (picked - picked.detach() + 1.0)[:, None]  # 1 in value, soft gradient
        if self.gate is not None and mode in _GATED_MODES:
            weights = _gate_weights(logits, picks, self.gate, self.normalize_gate, probs)[:, None]
        log_prob = plackett_luce_log_prob(logits, picks, log_p)
        return RouteResult(picks[:, None], log_prob, probs[:, None], weights, logits[:, None])

    def _independent(
        self, logits: Tensor, chooser: Tensor, choice: Tensor | None, mode: str, generator: torch.Generator | None
    ) -> RouteResult:
        """Route (or score ``choice``) with k independent categoricals: logits and chooser (B, k, M)."""
        log_p = F.log_softmax(logits, dim=-1)  # (B, k, M)
        batch = logits.shape[0]
        if choice is not None:
            choice = self._check_choice(choice, batch)
            if choice.shape[1] != self.k:
                raise ShapeError(f"a picks='independent' router scores one pick per slot: choice must have shape "
                                 f"(batch={batch}, k={self.k}), got {tuple(choice.shape)}")
            picks = choice
        elif mode in ("argmax", "topk"):
            picks = chooser.argmax(-1)  # (B, k): each slot's most probable module
        else:
            picks = (chooser + _gumbel(logits.shape, logits, generator)).argmax(-1)  # Gumbel-max per slot
        log_prob = log_p.gather(-1, picks[..., None])[..., 0].sum(-1)
        return RouteResult(picks[:, None], log_prob, log_p.exp().mean(1)[:, None])

    def n_choices(self) -> int:
        """C, the number of choices per layer that :meth:`choices` lists (computed without listing them)."""
        if self.mode == "soft":
            return 1
        if self.picks == "independent":
            return self.n_modules**self.k
        return math.perm(self.n_modules, self.k)

    def choices(self) -> Tensor:
        """Every choice this router can make for one layer, in a fixed order.

        Returns:
            (C, k) long module ids: the ordered k-tuples of distinct modules, C = M! / (M - k)!, for
            ``picks="plackett_luce"`` (the sequential probabilities of these sum to 1); all M ** k k-tuples
            for ``picks="independent"``; the single row ``0 .. M-1`` for a ``"soft"`` router, which uses
            every module.
        """
        modules = range(self.n_modules)
        if self.mode == "soft":
            rows: list[tuple[int, ...]] = [tuple(modules)]
        elif self.picks == "independent":
            rows = list(itertools.product(modules, repeat=self.k))
        else:
            rows = list(itertools.permutations(modules, self.k))
        device = next(self.parameters()).device
        return torch.tensor(rows, dtype=torch.long, device=device)

    def gate_weights(self, logits: Tensor, picks: Tensor) -> Tensor:
        """The gate's weights of given picks, as :meth:`forward` computes them in a gated mode.

        Args:
            logits: (B, M) the router's logits of one layer.
            picks: (B, k) long distinct module ids per row.

        Returns:
            (B, k) the weights, differentiable in the logits.

        Raises:
            ConfigError: the router has no gate.
        """
        if self.gate is None:
            raise ConfigError("gate_weights needs a gated router, but this router was built with gate=None")
        return _gate_weights(logits, picks, self.gate, self.normalize_gate)

    def routing_mode(self) -> str:
        """The mode a call without ``mode=`` routes in: the router's own, or ``"topk"`` in eval mode for a
        ``"sample"`` or ``"gumbel"`` router built without ``sample_in_eval``."""
        if not self.training and not self.sample_in_eval and self.mode in ("sample", "gumbel"):
            return "topk"
        return self.mode

    def _check_choice(self, choice: Tensor, batch: int) -> Tensor:
        """A given choice (B, k') or (B, 1, k') checked and returned as (B, k')."""
        if not isinstance(choice, Tensor) or choice.dtype != torch.long:
            raise ConfigError(f"choice must be a long tensor of module ids, got {type(choice).__name__}")
        if choice.dim() == 3 and choice.shape[1] == 1:
            choice = choice[:, 0]
        if choice.dim() != 2 or choice.shape[0] != batch or not 1 <= choice.shape[1] <= self.n_modules:
            raise ShapeError(
                f"choice must have shape (batch={batch}, k) or (batch={batch}, 1, k) with 1 <= k <= "
                f"M={self.n_modules}, got {tuple(choice.shape)}"
            )
        if int(choice.min()) < 0 or int(choice.max()) >= self.n_modules:
            raise ConfigError(f"choice must hold module ids in [0, {self.n_modules}) (n_modules={self.n_modules})")
        return choice

    def _score(self, logits: Tensor, log_p: Tensor, probs: Tensor, choice: Tensor, batch: int, mode: str
               ) -> RouteResult:
        choice = self._check_choice(choice, batch)
        if mode == "soft":
            return RouteResult(
                choice[:, None],
                logits.new_zeros(batch),
                probs[:, None],
                probs.gather(-1, choice)[:, None],
                logits[:, None],
            )
        weights = None
        if self.gate is not None and mode in _GATED_MODES:
            weights = _gate_weights(logits, choice, self.gate, self.normalize_gate, probs)[:, None]
        log_prob = plackett_luce_log_prob(logits, choice, log_p)
        return RouteResult(choice[:, None], log_prob, probs[:, None], weights, logits[:, None])

    def extra_repr(self) -> str:
        kind = "static" if self.static else f"dynamic, d_in={self.d_in}"
        gate = "" if self.gate is None else f", gate={self.gate!r}, normalize_gate={self.normalize_gate}"
        picks = "" if self.picks == "plackett_luce" else f", picks={self.picks!r}"
        return (f"n_modules={self.n_modules}, n_layers={self.n_layers}, mode={self.mode!r}, k={self.k}{gate}{picks}, "
                f"{kind}")


def _check_gate(gate: object, normalize_gate: object, mode: str, k: int) -> tuple[str | None, bool]:
    """Validate the gate arguments; return the gate and whether it renormalises."""
    if gate is None:
        if normalize_gate is not None:
            raise ConfigError(f"normalize_gate applies to a gate; got normalize_gate={normalize_gate!r} with gate=None")
        return None, False
    if gate not in GATES:
        raise ConfigError(f"gate must be None or one of {GATES}, got gate={gate!r}")
    if mode not in _GATED_MODES:
        raise ConfigError(f"gate={gate!r} applies to the modes {_GATED_MODES}; mode={mode!r} weights its picks itself")
    if normalize_gate is not None and not isinstance(normalize_gate, bool):
        raise ConfigError(f"normalize_gate must be None or a bool, got normalize_gate={normalize_gate!r}")
    if gate == "topk_softmax":
        if normalize_gate is False:
            raise ConfigError("gate='topk_softmax' is normalised by definition; got normalize_gate=False")
        if k < 2:
            raise ConfigError(
                f"gate='topk_softmax' needs k >= 2 (a softmax over one logit is 1 and trains nothing), got k={k}; "
                "use gate='softmax_topk' for k = 1"
            )
        return gate, True
    normalize = k > 1 if normalize_gate is None else normalize_gate
    if normalize and k == 1:
        raise ConfigError(
            f"normalize_gate=True with k=1 makes the single weight 1, with no gradient to the router; "
            f"use normalize_gate=None or False for gate={gate!r} at k = 1"
        )
    return gate, normalize
