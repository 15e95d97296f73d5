"""Generalised EM (Kirsch et al. 2018) and its top-K buffer generalisation (research note, "Other kinds of
training"; priority-queue training, Abolafia et al. 2018).

Each training example n keeps a buffer A*_n of the K best routings seen so far. A step on a minibatch:

1. **Sample** S fresh routings Ã_n ~ p(a | x_n) per example.
2. **E-step** (every ``e_step_every``-th step, and always for examples whose buffer is still empty): score
   the buffer entries and the fresh samples with the current parameters by
   ``log p(y_n | x_n, a) + log p(a | x_n)`` (buffer scores are recomputed: the target moves as the
   parameters change), and keep the K best distinct routings.
3. **M-step**: with A_n = A*_n (plus Ã_n when ``sample_gradient``), minimise
   ``(1/|B|) sum_n (1/|A_n|) [ sum_{a in A*_n} -(log p(y|x,a) + log p(a|x))
   + sum_{a in Ã_n} -(log p(y|x,a) + (R(a) - b) log p(a|x)) ]``:
   buffer entries are fitted by maximum likelihood (modules and router), fresh samples contribute the
   REINFORCE terms.

K = 1 without fresh samples in the gradient is Kirsch et al.'s EM (M-step on the incumbent, which the
E-step replaces only by a strictly better sample); an empty buffer (K = 0) is REINFORCE with S samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .._checks import check_ints
from .._config import Config
from ..errors import ConfigError
from ..routing import ModularStack, RoutedModel
from ._distributed import all_gather_rows
from ._likelihood import LogLikelihood
from ._regularizers import RoutingRegularizers
from ._routing_objective import BASELINES, Baseline, Batch, RoutingObjective, check_reward, make_reward, repeat_rows

__all__ = ["RoutingBuffer", "TopKBuffer", "TopKBufferConfig", "generalized_em"]


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
    score = torch.nan_to_num(score, nan=float("-inf"))
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
    """Settings of :class:`TopKBuffer`.

    Attributes:
        buffer_size: K, routings kept per example (0: no buffer, plain REINFORCE).
        samples: S, fresh routings sampled per example and step.
        sample_gradient: whether the fresh samples also enter the gradient (as REINFORCE terms); without
            it they only compete for a place in the buffer.
        e_step_every: run the E-step on every n-th step (the E-step : M-step schedule is 1 : n); examples
            with an empty buffer always get one.
        reward: ``"log_likelihood"`` or ``"likelihood"`` (of the fresh samples' REINFORCE terms).
        baseline: ``"moving_average"``, ``"learned"`` or ``"none"`` (ditto).
        baseline_decay: decay of the moving-average baseline.
        regularizers: entropy bonus, load balancing, I(A;X) weights (on the router's probabilities).
    """

    buffer_size: int = 4
    samples: int = 4
    sample_gradient: bool = True
    e_step_every: int = 1
    reward: str = "log_likelihood"
    baseline: str = "moving_average"
    baseline_decay: float = 0.9
    regularizers: RoutingRegularizers = field(default_factory=RoutingRegularizers)

    def __post_init__(self) -> None:
        check_ints(self, "buffer_size", "samples", minimum=0)
        check_ints(self, "e_step_every")
        if self.samples == 0:
            raise ConfigError("TopKBufferConfig.samples must be >= 1: fresh samples are what fills the buffer")
        if self.buffer_size == 0 and not self.sample_gradient:
            raise ConfigError("with buffer_size=0 the fresh samples are the only routings: set sample_gradient=True")
        check_reward(self.reward)
        if self.baseline not in BASELINES:
            raise ConfigError(f"TopKBufferConfig.baseline must be one of {BASELINES}, got {self.baseline!r}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ConfigError(f"TopKBufferConfig.baseline_decay must be in [0, 1), got {self.baseline_decay!r}")

    @classmethod
    def em(cls, *, samples: int = 4, e_step_every: int = 1,
           regularizers: RoutingRegularizers | None = None) -> TopKBufferConfig:
        """Kirsch et al.'s generalised EM as a configuration: one incumbent routing per example, replaced in
        the E-step by the best of S fresh samples when that scores strictly higher, and an M-step on the
        incumbents (modules by log p(y|x,a*), router by log p(a*|x)): ``buffer_size=1``,
        ``sample_gradient=False``, no baseline."""
        return cls(buffer_size=1, samples=samples, sample_gradient=False, e_step_every=e_step_every,
                   baseline="none", regularizers=regularizers or RoutingRegularizers())


class TopKBuffer(RoutingObjective):
    """The top-K buffer algorithm (see the module docstring); :func:`generalized_em` is its K = 1 case.

    Loss terms: ``loss_task`` (-log p(y|x,a), buffer entries and fresh samples), ``loss_router``
    (-log p(a|x) of the buffer entries, -(R - b) log p(a|x) of the fresh samples), the regularisers, and the
    logged ``reward``, ``buffer_score`` (mean best score) and ``e_step`` (1 when an E-step ran).

    Args:
        model: the routed model.
        dataset_size: N; batches must carry ``"index"`` ids in [0, N).
        config: settings.
        likelihood: log p(y | x, a) per example (default: categorical).
        route_shape: (L, k) of the model's routings; read from a :class:`ModularStack` when not given.
        baseline_net: network of a learned baseline.

    Raises:
        ConfigError: ``route_shape`` missing for a model that is not a ModularStack; at ``loss`` time, a batch
            without ``"index"`` or with ids outside [0, N).

    Example:
        >>> import torch
        >>> from modnets.routing import MLPExperts, ModularLayer, ModularStack, Router
        >>> bank = MLPExperts(n_modules=4, d_in=6, d_hidden=8, d_out=3)
        >>> net = ModularStack(layers=[ModularLayer(modules=bank,
        ...                                         router=Router(n_modules=4, d_in=6))])
        >>> em = generalized_em(net, dataset_size=100, config=TopKBufferConfig.em(samples=3))
        >>> batch = {"x": torch.randn(8, 6), "y": torch.randint(0, 3, (8,)), "index": torch.arange(8)}
        >>> em.loss(batch)["loss"].backward()
        >>> int(em.buffer.valid[:8].sum()), int(em.buffer.valid[8:].sum())
        (8, 0)
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
        k_size = self.config.buffer_size
        self.buffer = RoutingBuffer(dataset_size=dataset_size, size=k_size, n_layers=route_shape[0],
                                    k=route_shape[1]) if k_size else None

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
        if self.buffer is not None:
            # E-step: the buffer and the fresh samples compete, scored with the current parameters
            fresh_choice = fresh.route.choice.view(s, b, *fresh.route.choice.shape[1:]).transpose(0, 1)
            cand_ll = torch.cat([stored_ll if stored_ll is not None else fresh_ll.new_zeros(b, k_size),
                                 fresh_ll.view(s, b).t()], 1)  # (B, K + S)
            cand_lp = torch.cat([stored_lp if stored_lp is not None else fresh_ll.new_zeros(b, k_size),
                                 fresh.route.log_prob.view(s, b).t()], 1)
            pick, valid = self._e_step(index, stored, valid, fresh_choice, (cand_ll + cand_lp).detach())
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
            router_rows.append((lp * mask).t().reshape(-1))
            example_rows.append(repeat_rows(arange, k_size))
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
        return self._finish(terms, route)

    def _e_step_due(self) -> bool:
        return int(self.steps) % self.config.e_step_every == 0

    @torch.no_grad()
    def _e_step(
        self, index: Tensor, stored: Tensor, valid: Tensor, fresh: Tensor, score: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Update the buffer of the batch's examples (those due for an E-step, or with an empty buffer).

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
        update = valid.new_full((b,), self._e_step_due()) | ~valid.any(1)
        rows = update.nonzero().squeeze(1)
        cand = torch.cat([stored[rows], fresh[rows]], 1)  # (n, K + S, L, k)
        score = score.masked_fill(torch.cat([~valid, valid.new_zeros(fresh.shape[:2])], 1), float("-inf"))
        chosen, best, ok = best_distinct(cand, score[rows], k_size)
        # called even with no rows: in data-parallel training the processes exchange their updates here
        entries = cand.gather(1, chosen.view(*chosen.shape, 1, 1).expand(-1, -1, *cand.shape[2:]))
        self.buffer.write(index[rows], entries, best, ok)
        return pick.index_put((rows,), chosen), valid.index_put((rows,), ok)


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
