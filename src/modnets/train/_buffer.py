"""Generalised EM (Kirsch et al. 2018) and its top-K buffer generalisation (research note, "Other kinds of
training"; priority-queue training, Abolafia et al. 2018).

Each training example n keeps a buffer A*_n of the K best routings seen so far. A step on a minibatch:

1. **Sample** S fresh routings Ã_n ~ p(a | x_n) per example.
2. **E-step** (every ``e_step_every``-th step, and always on an example's first visit): score the buffer
   entries and the fresh samples and keep the K best distinct routings. The score (``score``) is
   ``log p(y_n | x_n, a) + log p(a | x_n)`` (``"joint"``), ``log p(a | x_n)`` (``"router"``, the note's
   "scored by p(a_n | x_n)") or ``log p(y_n | x_n, a)`` (``"likelihood"``, the reward of priority-queue
   training). Buffer entries are scored again with the current parameters (``rescore=True``: the target
   moves as the parameters change, and an entry's score can fall) or keep the score they entered with
   (``rescore=False``: priority-queue training, where an entry is never scored again, so the buffer's
   scores never fall; a fresh sample of a routing already held is ignored).
3. **M-step**: with A_n = A*_n (plus Ã_n when ``sample_gradient``), minimise
   ``(1/|B|) sum_n (1/|A_n|) [ sum_{a in A*_n} -(log p(y|x,a) + |A*_n| w_a log p(a|x))
   + sum_{a in Ã_n} -(log p(y|x,a) + (R(a) - b) log p(a|x)) ]``:
   the modules fit every buffer entry by maximum likelihood, the router fits the buffer entries with
   weights w (``buffer_weights``: ``"uniform"``, w_a = 1 / |A*_n|, maximum likelihood; or ``"score"``,
   w_a = the entry's normalised score ``softmax(score over A*_n)``, the note's reward-weighted gradient:
   with the joint score this is the posterior over the buffer, with ``"likelihood"`` the normalised reward
   p(y|x,a) / sum p(y|x,a')), and fresh samples contribute the REINFORCE terms.

Initialisation (``init``): ``"best_sample"`` leaves the buffers empty, so that an example's first E-step
fills it with the best of its S samples; ``"random"`` starts every example with one routing drawn
uniformly from the routing space (each layer's picks uniform over the router's choices), which then
competes with the samples like any buffer entry; this is Kirsch et al.'s initialisation (libmodular's
``best_selection`` variable starts uniformly random) and the default of :meth:`TopKBufferConfig.em`.

K = 1 without fresh samples in the gradient is Kirsch et al.'s EM (M-step on the incumbent, which the
E-step replaces only by a strictly better sample); an empty buffer (K = 0) is REINFORCE with S samples.
Every step also logs the router gap (``nll_trained`` under the best buffer entry, ``nll_router``,
``router_gap``): EM's incumbents are chosen by how well they explain y, so a router that cannot predict
them from x shows as a large gap (see :class:`~modnets.train.RouterGapWarning`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .._checks import check_ints
from .._config import Config
from ..errors import ConfigError
from ..routing import ModularStack, RoutedModel, Router
from ._distributed import all_gather_rows
from ._likelihood import LogLikelihood
from ._regularizers import RoutingRegularizers
from ._routing_objective import (
    BASELINES,
    Baseline,
    Batch,
    RouterGap,
    RoutingObjective,
    check_gap_warning,
    check_reward,
    make_reward,
    repeat_rows,
)

__all__ = ["BUFFER_WEIGHTS", "INITS", "SCORES", "RoutingBuffer", "TopKBuffer", "TopKBufferConfig", "generalized_em"]

#: What the E-step ranks routings by (``TopKBufferConfig.score``).
SCORES = ("joint", "router", "likelihood")
#: How the router fits the buffer entries (``TopKBufferConfig.buffer_weights``).
BUFFER_WEIGHTS = ("uniform", "score")
#: How the buffers start (``TopKBufferConfig.init``).
INITS = ("best_sample", "random")


class RoutingBuffer(nn.Module):
    """The per-example table of the K best routings seen (the incumbents, for K = 1).

    Kept in buffers, so that it is saved and restored with the objective's ``state_dict``.

    Args:
        dataset_size: N, the number of training examples (ids 0 .. N-1).
        size: K, routings kept per example.
        n_layers: L, routed layers.
        k: modules picked per layer.

    Attributes:
        choice: (N, K, L, k) long routings.
        valid: (N, K) bool, which slots hold a routing.
        score: (N, K) their scores when last computed, log p(y|x,a) + log p(a|x).
    """

    def __init__(self, *, dataset_size: int, size: int, n_layers: int, k: int):
        super().__init__()
        for name, value in (("dataset_size", dataset_size), ("n_layers", n_layers), ("k", k)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"RoutingBuffer {name} must be a positive int, got {value!r}")
        if not isinstance(size, int) or size < 1:
            raise ConfigError(f"RoutingBuffer size must be a positive int, got {size!r}")
        self.dataset_size, self.size = dataset_size, size
        self.register_buffer("choice", torch.zeros(dataset_size, size, n_layers, k, dtype=torch.long))
        self.register_buffer("valid", torch.zeros(dataset_size, size, dtype=torch.bool))
        self.register_buffer("score", torch.full((dataset_size, size), float("-inf")))

    def check_ids(self, index: Tensor) -> None:
        """Raises ConfigError unless ``index`` holds long ids in [0, N)."""
        if index.dtype != torch.long or (
            index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.dataset_size)
        ):
            raise ConfigError(
                f"example ids must be long ints in [0, dataset_size={self.dataset_size}), got dtype {index.dtype} "
                f"and range [{int(index.min()) if index.numel() else '-'}, "
                f"{int(index.max()) if index.numel() else '-'}]"
            )

    @torch.no_grad()
    def write(self, ids: Tensor, choice: Tensor, score: Tensor, valid: Tensor) -> None:
        """Store new entries for some examples.

        In data-parallel training every process calls it at the same step (with zero rows if it has
        nothing to store); the processes exchange their updates, so that all of them keep the same table
        although each sees only its share of the examples.

        Args:
            ids: (n,) example ids, distinct.
            choice: (n, K, L, k) routings, score (n, K) their scores, valid (n, K) which slots hold one.
        """
        ids, choice, score, valid = all_gather_rows(ids, choice, score, valid)
        self.choice[ids], self.score[ids], self.valid[ids] = choice, score, valid


def best_distinct(choice: Tensor, score: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``size`` best distinct routings of each row; earlier candidates win ties.

    Args:
        choice: (B, C, L, k) candidate routings.
        score: (B, C) their scores; ``-inf`` (or NaN) marks an empty candidate.
        size: K <= C.

    Returns:
        index (B, K) of the kept candidates in [0, C), their score (B, K) and valid (B, K), best first.
    """
    b, c = score.shape
    score = score.masked_fill(score.isnan(), float("-inf"))  # (nan_to_num would turn -inf into a finite score)
    order = score.argsort(dim=1, descending=True, stable=True)
    score = score.gather(1, order)
    flat = choice.gather(1, order.view(b, c, 1, 1).expand_as(choice)).flatten(2)  # (B, C, L*k), best first
    same = (flat[:, :, None, :] == flat[:, None, :, :]).all(-1)  # (B, C, C)
    earlier = torch.ones(c, c, dtype=torch.bool, device=score.device).tril(-1)
    score = score.masked_fill((same & earlier).any(-1), float("-inf"))  # a repeat of a better candidate
    keep = score.argsort(dim=1, descending=True, stable=True)[:, :size]
    score = score.gather(1, keep)
    return order.gather(1, keep), score, score > float("-inf")


@dataclass
class TopKBufferConfig(Config):
    """Settings of :class:`TopKBuffer`. The defaults are the plain top-K buffer of the research note.

    Attributes:
        buffer_size: K, routings kept per example (0: no buffer, plain REINFORCE).
        samples: S, fresh routings sampled per example and step.
        sample_gradient: whether the fresh samples also enter the gradient (as REINFORCE terms); without
            it they only compete for a place in the buffer.
        e_step_every: run the E-step on every n-th step (the E-step : M-step schedule is 1 : n); an
            example's first visit always gets one.
        score: what the E-step ranks routings by: ``"joint"`` (log p(y|x,a) + log p(a|x), default),
            ``"router"`` (log p(a|x) alone) or ``"likelihood"`` (log p(y|x,a) alone).
        rescore: score the buffer entries again at every E-step with the current parameters (default);
            ``False`` keeps the score each entry entered with and ignores fresh samples of routings already
            held, so that an entry is never scored again and a buffer's scores never fall (priority-queue
            training, Abolafia et al. 2018).
        buffer_weights: how the router fits the buffer entries: ``"uniform"`` (maximum likelihood, every
            entry alike; default) or ``"score"`` (each entry's log p(a|x) weighted by its normalised score,
            ``softmax`` over the example's entries: the note's reward-weighted gradient).
        init: ``"best_sample"`` (empty buffers, filled by the first E-step's best samples; default) or
            ``"random"`` (one routing per example drawn uniformly at construction, as Kirsch et al.; needs
            ``buffer_size >= 1``, and a model whose routers say which choices each layer has: a
            :class:`~modnets.routing.ModularStack`, or a model whose routers all choose alike).
        reward: ``"log_likelihood"`` or ``"likelihood"`` (of the fresh samples' REINFORCE terms).
        baseline: ``"moving_average"``, ``"learned"`` or ``"none"`` (ditto).
        baseline_decay: decay of the moving-average baseline.
        regularizers: entropy bonus, load balancing, I(A;X) weights (on the router's probabilities).
        gap_warning: warn (once, :class:`~modnets.train.RouterGapWarning`) when the moving average of the
            logged ``router_gap`` (task loss under the router's own routes minus that under the best buffer
            entry) exceeds this share of the average loss under the router's routes (of 1 nat, when that
            is smaller); ``None`` never warns. See :class:`~modnets.train.RouterGapWarning`.
    """

    buffer_size: int = 4
    samples: int = 4
    sample_gradient: bool = True
    e_step_every: int = 1
    score: str = "joint"
    rescore: bool = True
    buffer_weights: str = "uniform"
    init: str = "best_sample"
    reward: str = "log_likelihood"
    baseline: str = "moving_average"
    baseline_decay: float = 0.9
    regularizers: RoutingRegularizers = field(default_factory=RoutingRegularizers)
    gap_warning: float | None = 0.5

    def __post_init__(self) -> None:
        check_ints(self, "buffer_size", "samples", minimum=0)
        check_ints(self, "e_step_every")
        if self.samples == 0:
            raise ConfigError("TopKBufferConfig.samples must be >= 1: fresh samples are what fills the buffer")
        if self.buffer_size == 0 and not self.sample_gradient:
            raise ConfigError("with buffer_size=0 the fresh samples are the only routings: set sample_gradient=True")
        for name, accepted in (("score", SCORES), ("buffer_weights", BUFFER_WEIGHTS), ("init", INITS)):
            if getattr(self, name) not in accepted:
                raise ConfigError(f"TopKBufferConfig.{name} must be one of {accepted}, got {getattr(self, name)!r}")
        if not isinstance(self.rescore, bool):
            raise ConfigError(f"TopKBufferConfig.rescore must be True or False, got {self.rescore!r}")
        if self.init == "random" and self.buffer_size == 0:
            raise ConfigError("TopKBufferConfig.init='random' fills a buffer: it needs buffer_size >= 1, got 0")
        check_reward(self.reward)
        if self.baseline not in BASELINES:
            raise ConfigError(f"TopKBufferConfig.baseline must be one of {BASELINES}, got {self.baseline!r}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ConfigError(f"TopKBufferConfig.baseline_decay must be in [0, 1), got {self.baseline_decay!r}")
        check_gap_warning(self.gap_warning, "TopKBufferConfig")

    @classmethod
    def em(cls, *, samples: int = 4, e_step_every: int = 1, init: str = "random",
           regularizers: RoutingRegularizers | None = None) -> TopKBufferConfig:
        """Kirsch et al.'s generalised EM as a configuration: one incumbent routing per example, replaced in
        the E-step by the best of S fresh samples when that scores strictly higher, and an M-step on the
        incumbents (modules by log p(y|x,a*), router by log p(a*|x)): ``buffer_size=1``,
        ``sample_gradient=False``, no baseline. The incumbents start uniformly random (``init="random"``,
        as Kirsch et al.); ``init="best_sample"`` starts each from its first E-step's best sample."""
        return cls(buffer_size=1, samples=samples, sample_gradient=False, e_step_every=e_step_every, init=init,
                   baseline="none", regularizers=regularizers or RoutingRegularizers())


class TopKBuffer(RoutingObjective):
    """The top-K buffer algorithm (see the module docstring); :func:`generalized_em` is its K = 1 case.

    Loss terms: ``loss_task`` (-log p(y|x,a), buffer entries and fresh samples), ``loss_router``
    (-w log p(a|x) of the buffer entries, -(R - b) log p(a|x) of the fresh samples), the regularisers, and the
    logged ``reward``, ``buffer_score`` (mean best score), ``e_step`` (1 when an E-step ran) and the router
    gap (``nll_trained``, ``nll_router``, ``router_gap``).

    Args:
        model: the routed model.
        dataset_size: N; batches must carry ``"index"`` ids in [0, N).
        config: settings.
        likelihood: log p(y | x, a) per example (default: categorical).
        route_shape: (L, k) of the model's routings; read from a :class:`ModularStack` when not given.
        baseline_net: network of a learned baseline.

    Raises:
        ConfigError: ``route_shape`` missing for a model that is not a ModularStack; ``init="random"`` for a
            model whose routers do not say which choices each layer has; at ``loss`` time, a batch without
            ``"index"`` or with ids outside [0, N).

    Example:
        >>> import torch
        >>> from modnets.routing import MLPExperts, ModularLayer, ModularStack, Router
        >>> bank = MLPExperts(n_modules=4, d_in=6, d_hidden=8, d_out=3)
        >>> net = ModularStack(layers=[ModularLayer(modules=bank,
        ...                                         router=Router(n_modules=4, d_in=6))])
        >>> em = generalized_em(net, dataset_size=100, config=TopKBufferConfig.em(samples=3))
        >>> bool(em.buffer.valid[:, 0].all())  # every example starts with a random incumbent
        True
        >>> batch = {"x": torch.randn(8, 6), "y": torch.randint(0, 3, (8,)), "index": torch.arange(8)}
        >>> em.loss(batch)["loss"].backward()  # the batch's incumbents are scored and may be replaced
        >>> bool(torch.isfinite(em.buffer.score[:8]).all()), bool(torch.isfinite(em.buffer.score[8:]).any())
        (True, False)
    """

    def __init__(
        self,
        model: RoutedModel,
        *,
        dataset_size: int,
        config: TopKBufferConfig | None = None,
        likelihood: LogLikelihood | None = None,
        route_shape: tuple[int, int] | None = None,
        baseline_net: nn.Module | None = None,
        eval_mode: str = "auto",
    ):
        self.config = config or TopKBufferConfig()
        super().__init__(model, likelihood=likelihood, regularizers=self.config.regularizers, eval_mode=eval_mode)
        if route_shape is None:
            if not isinstance(model, ModularStack):
                raise ConfigError("route_shape=(layers, k) is needed for a model that is not a ModularStack")
            route_shape = (model.n_layers, model.layers[0].k)
        if not isinstance(dataset_size, int) or dataset_size < 1:
            raise ConfigError(f"dataset_size must be a positive int, got {dataset_size!r}")
        self.dataset_size = dataset_size
        self.baseline = Baseline(self.config.baseline, decay=self.config.baseline_decay, net=baseline_net)
        self.gap = RouterGap(self.config.gap_warning)
        k_size = self.config.buffer_size
        self.buffer = RoutingBuffer(dataset_size=dataset_size, size=k_size, n_layers=route_shape[0],
                                    k=route_shape[1]) if k_size else None
        if self.config.init == "random":
            assert self.buffer is not None
            self.buffer.choice[:, 0] = _uniform_routings(model, dataset_size, route_shape)
            self.buffer.valid[:, 0] = True  # score -inf: not scored yet, so the first visit runs an E-step

    _needs_index = True

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        cfg = self.config
        x, y, task, index = self._inputs(batch, need_index=True)
        assert index is not None
        b, s, k_size = x.shape[0], cfg.samples, cfg.buffer_size
        arange = torch.arange(b, device=x.device)
        terms: dict[str, Tensor] = {}
        task_rows, router_rows, example_rows = [], [], []
        per_example = torch.full((b,), float(s if cfg.sample_gradient else 0), device=x.device)
        stored_ll = stored_lp = None
        if self.buffer is not None:
            self.buffer.check_ids(index)
            stored, valid = self.buffer.choice[index], self.buffer.valid[index]  # (B, K, L, k), (B, K)
            if bool(valid.any()):  # buffer entries, (K * B) rows entry-major, with a gradient for the M-step
                out, ll = self._run(x, y, task, stored.transpose(0, 1).reshape(k_size * b, *stored.shape[2:]),
                                    samples=k_size)
                stored_ll, stored_lp = ll.view(k_size, b).t(), out.route.log_prob.view(k_size, b).t()
                route = out.route
        # fresh samples, (S * B) rows sample-major; with a gradient only when they enter it
        with torch.set_grad_enabled(cfg.sample_gradient and torch.is_grad_enabled()):
            fresh, fresh_ll = self._run(x, y, task, samples=s)
        if cfg.sample_gradient or stored_ll is None:
            route = fresh.route
        trained_nll = -fresh_ll.mean()
        if self.buffer is not None:
            # E-step: the buffer and the fresh samples compete
            fresh_choice = fresh.route.choice.view(s, b, *fresh.route.choice.shape[1:]).transpose(0, 1)
            cand_ll = torch.cat([stored_ll if stored_ll is not None else fresh_ll.new_zeros(b, k_size),
                                 fresh_ll.view(s, b).t()], 1)  # (B, K + S)
            cand_lp = torch.cat([stored_lp if stored_lp is not None else fresh_ll.new_zeros(b, k_size),
                                 fresh.route.log_prob.view(s, b).t()], 1)
            score = self._score(cand_ll, cand_lp)
            if not cfg.rescore:  # an entry keeps the score it entered with, once it has one
                kept = self.buffer.score[index].to(score.dtype)
                score[:, :k_size] = torch.where(kept > float("-inf"), kept, score[:, :k_size])
                # and a fresh sample of a routing already held does not re-enter with a new score
                known = (fresh_choice.flatten(2)[:, :, None] == stored.flatten(2)[:, None]).all(-1)  # (B, S, K)
                score[:, k_size:] = score[:, k_size:].masked_fill((known & valid[:, None]).any(-1), float("-inf"))
            pick, valid = self._e_step(index, stored, valid, fresh_choice, score)
            terms["e_step"] = x.new_tensor(float(self._e_step_due()))
            terms["buffer_score"] = self.buffer.score[index, 0].mean()
            # M-step on the (updated) buffer entries; a fresh sample that entered the buffer without a
            # gradient is run again with one
            ll, lp = cand_ll.gather(1, pick), cand_lp.gather(1, pick)  # (B, K)
            rerun = valid & (pick >= k_size) & (not cfg.sample_gradient)
            if bool(rerun.any()):
                n, j = rerun.nonzero(as_tuple=True)
                out, again = self._run(x[n], y[n], None if task is None else task[n], self.buffer.choice[index[n], j])
                # (under autocast the rerun may come back in another precision)
                ll, lp = ll.index_put((n, j), again.to(ll.dtype)), lp.index_put((n, j), out.route.log_prob.to(lp.dtype))
            mask = valid.to(ll.dtype)
            per_example = per_example + valid.sum(1)
            task_rows.append((ll * mask).t().reshape(-1))
            router_rows.append((lp * self._entry_weights(index, valid).to(lp.dtype)).t().reshape(-1))
            example_rows.append(repeat_rows(arange, k_size))
            if bool(valid[:, 0].any()):
                trained_nll = -ll[:, 0][valid[:, 0]].mean()  # the best entry: the incumbent, for K = 1
        if cfg.sample_gradient:
            reward = make_reward(fresh_ll, cfg.reward)
            advantage, baseline_terms = self.baseline.advantage(reward, x)
            terms.update(baseline_terms, reward=reward.mean())
            task_rows.append(fresh_ll)
            router_rows.append(advantage * fresh.route.log_prob)
            example_rows.append(repeat_rows(arange, s))
        # every example's routings weigh 1 / |A_n|, and the batch is averaged
        weight = 1.0 / (per_example.clamp_min(1)[torch.cat(example_rows)] * b)
        terms["loss_task"] = -(torch.cat(task_rows) * weight).sum()
        terms["loss_router"] = -(torch.cat(router_rows) * weight).sum()
        terms.update(self.gap.observe(trained_nll, self._router_nll(x, y, task), step=int(self.steps) + 1,
                                      owner=type(self).__name__))
        return self._finish(terms, route)

    def _score(self, ll: Tensor, lp: Tensor) -> Tensor:
        """(B, C) the E-step's scores (no gradient) of candidates with log p(y|x,a) ``ll`` and log p(a|x) ``lp``."""
        kind = self.config.score
        score = ll + lp if kind == "joint" else lp if kind == "router" else ll
        return score.detach().clone()

    def _entry_weights(self, index: Tensor, valid: Tensor) -> Tensor:
        """(B, K) the weight of each buffer entry's router term, ``|A*_n| w_a`` (1 for ``"uniform"``), 0 for
        empty slots."""
        mask = valid.float()
        if self.config.buffer_weights == "uniform":
            return mask
        assert self.buffer is not None
        scores = self.buffer.score[index].float().masked_fill(~valid, float("-inf"))
        w = torch.softmax(scores, dim=1).nan_to_num(0.0)  # a row without entries: all zero
        return w * mask.sum(1, keepdim=True)

    def _e_step_due(self) -> bool:
        return int(self.steps) % self.config.e_step_every == 0

    @torch.no_grad()
    def _e_step(
        self, index: Tensor, stored: Tensor, valid: Tensor, fresh: Tensor, score: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Update the buffer of the batch's examples (those due for an E-step, or visited for the first time).

        Args:
            index: (B,) example ids.
            stored: (B, K, L, k) buffer entries and valid (B, K) their slots in use.
            fresh: (B, S, L, k) fresh samples.
            score: (B, K + S) scores of the buffer entries, then the fresh samples.

        Returns:
            pick (B, K): which candidate each new buffer slot holds (in [0, K + S)), and valid (B, K).
        """
        assert self.buffer is not None
        b, k_size = stored.shape[:2]
        pick = torch.arange(k_size, device=index.device).expand(b, k_size)
        # a first visit: an empty buffer, or a random initial entry not scored yet
        first = ~valid.any(1) | (valid & (self.buffer.score[index] == float("-inf"))).any(1)
        update = valid.new_full((b,), self._e_step_due()) | first
        rows = update.nonzero().squeeze(1)
        cand = torch.cat([stored[rows], fresh[rows]], 1)  # (n, K + S, L, k)
        score = score.masked_fill(torch.cat([~valid, valid.new_zeros(fresh.shape[:2])], 1), float("-inf"))
        chosen, best, ok = best_distinct(cand, score[rows], k_size)
        # called even with no rows: in data-parallel training the processes exchange their updates here
        entries = cand.gather(1, chosen.view(*chosen.shape, 1, 1).expand(-1, -1, *cand.shape[2:]))
        self.buffer.write(index[rows], entries, best, ok)
        return pick.index_put((rows,), chosen), valid.index_put((rows,), ok)


def _uniform_routings(model: RoutedModel, n: int, route_shape: tuple[int, int]) -> Tensor:
    """``n`` routings drawn uniformly from the model's routing space, from the global torch random source.

    Each layer's picks are uniform over its router's :meth:`~modnets.routing.Router.choices`: a
    :class:`ModularStack`'s own layer routers, or, for another model, the one kind of router it holds.

    Returns:
        (n, L, k) long module ids, (L, k) = ``route_shape``.

    Raises:
        ConfigError: a model that is not a ModularStack and holds no Router or routers that choose
            differently (which layer uses which is unknown), or choices of another k than ``route_shape``.
    """
    if isinstance(model, ModularStack):
        per_layer = [layer.router.choices() for layer in model.layers]
    else:
        routers = [m for m in model.modules() if isinstance(m, Router)]
        kinds = {(r.n_modules, r.k, r.picks, r.mode == "soft") for r in routers}
        if len(kinds) != 1:
            raise ConfigError(f"TopKBufferConfig.init='random' draws each layer's routing from its router's choices; "
                              f"{type(model).__name__} holds {len(routers)} Router(s) of {len(kinds)} kinds, so which "
                              "layer draws from which is unknown (use init='best_sample')")
        per_layer = [routers[0].choices()] * route_shape[0]
    layers = []
    for choices in per_layer:
        if choices.shape[1] != route_shape[1]:
            raise ConfigError(f"route_shape={route_shape} says k={route_shape[1]} picks per layer, but the router's "
                              f"choices have {choices.shape[1]}")
        layers.append(choices.cpu()[torch.randint(choices.shape[0], (n,))])
    return torch.stack(layers, 1)


def generalized_em(
    model: RoutedModel,
    *,
    dataset_size: int,
    config: TopKBufferConfig | None = None,
    likelihood: LogLikelihood | None = None,
    route_shape: tuple[int, int] | None = None,
    eval_mode: str = "auto",
) -> TopKBuffer:
    """Kirsch et al.'s generalised EM: a :class:`TopKBuffer` with an EM configuration
    (:meth:`TopKBufferConfig.em`, the default), taking the same keywords as :class:`TopKBuffer`.

    Raises:
        ConfigError: ``config`` is not an EM configuration (``buffer_size=1``, ``sample_gradient=False``).
    """
    config = config if config is not None else TopKBufferConfig.em()
    if config.buffer_size != 1 or config.sample_gradient:
        raise ConfigError("generalized_em needs an EM configuration (buffer_size=1, sample_gradient=False), e.g. "
                          f"TopKBufferConfig.em(samples=4); got buffer_size={config.buffer_size}, "
                          f"sample_gradient={config.sample_gradient} (use TopKBuffer for that)")
    return TopKBuffer(model, dataset_size=dataset_size, config=config, likelihood=likelihood, route_shape=route_shape,
                      eval_mode=eval_mode)
