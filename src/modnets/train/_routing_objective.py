"""What the router-training algorithms share: the batch they read, the evaluation routing, the logged
routing diagnostics, the router gap, the reward and its baseline.

A routing objective wraps a routed model (:class:`~modnets.routing.ModularStack`, or anything with its call
signature) and turns a batch into named loss terms; ``"loss"`` is their sum. It is an
:class:`~modnets.train.Objective`: pass it to :func:`~modnets.train.fit`, which trains its parameters (the
model's, plus a learned baseline). Batches are mappings with

- ``"x"``: (B, ...) inputs; ``"y"``: (B, ...) targets;
- ``"task"``: (B,) long task ids, needed when a router was built with ``n_tasks``;
- ``"index"``: (B,) long example ids in [0, dataset_size), needed by the algorithms that keep a table per
  example (generalised EM, the top-K buffer).

The router gap. An algorithm that trains the modules on routes the router did not choose (EM's and the
top-K buffer's incumbents, picked in the E-step by how well they explain ``y``) can reach a low training
loss with routes that the router cannot reproduce from ``x``: the routing then carries label information
and the model's predictions, made with the router's own routes, are far worse than its training loss.
:class:`~modnets.train.Reinforce` and :class:`~modnets.train.TopKBuffer` log, at every step,

- ``nll_trained``: the mean task loss -log p(y | x, a) under the routes trained on (the best buffer entry,
  or the sampled routes);
- ``nll_router``: the same under the router's evaluation routes (``eval_mode``, by default each layer's
  most probable modules: the routes :meth:`RoutingObjective.predict` uses), computed without gradient;
- ``router_gap`` = ``nll_router - nll_trained``, in nats,

and warn once (:class:`RouterGapWarning`, from :class:`RouterGap`) when, after a warm-up of
:data:`GAP_WARMUP` steps, the moving average of the gap exceeds the fraction ``gap_warning`` of the moving
average of ``nll_router`` (or ``gap_warning`` nats while that is below 1 nat): the training routes then
remove most of the loss that the router's own routes leave. The criterion is relative, so that it means
the same for a classifier's cross-entropy and a Gaussian likelihood's larger nats, and it looks at moving
averages (decay 0.9), so that a router that merely lags behind its incumbents early in training does not
trigger it. Measured on a planted leak (4 classes, 4 modules, inputs that say nothing about the class):
EM's gap reaches 0.6-0.9 of the router's loss; healthy EM and top-K runs on a task the router can see
stay below 0.25 of it, with transients included.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError, NumericalError, ShapeError
from ..routing import RoutedModel, RoutedOutput, Router, RouteResult, routing_stats
from ._distributed import all_mean
from ._likelihood import LogLikelihood, categorical_log_likelihood
from ._objective import Batch, check_input, input_fits
from ._regularizers import RoutingRegularizers

__all__ = ["GAP_WARMUP", "REWARDS", "Batch", "RouterGap", "RouterGapWarning", "RoutingObjective", "repeat_rows"]

REWARDS = ("log_likelihood", "likelihood")
BASELINES = ("moving_average", "learned", "none")
#: Steps before the router-gap warning may fire: early gaps are transients of a router catching up.
GAP_WARMUP = 20
_GAP_DECAY = 0.9  # of the moving averages of the router gap and of the loss under the router's routes


class RouterGapWarning(UserWarning):
    """The routes a router objective trains on explain ``y`` far better than the router's own routes: the
    routing carries label information the router cannot predict from ``x``.

    :class:`~modnets.train.TopKBuffer` (EM included) and :class:`~modnets.train.Reinforce` log ``nll_trained``
    (the task loss under the routes they train on), ``nll_router`` (under the router's evaluation routes,
    those ``predict`` uses) and ``router_gap`` (the difference) at every step, and give this warning once
    when, after 20 steps, the gap's moving average exceeds the config's ``gap_warning`` share of the moving
    average of ``nll_router`` (of 1 nat, when that is smaller). EM's E-step sees ``y``, so its incumbents can
    encode the label; a router that cannot follow them leaves predictions far worse than the training loss.
    """


class _Inputs(NamedTuple):
    x: Tensor
    y: Tensor
    task: Tensor | None
    index: Tensor | None


def repeat_rows(t: Tensor | None, times: int) -> Tensor | None:
    """``times`` copies of a batch stacked sample-major: (B, ...) -> (times * B, ...), row s * B + n = t[n]."""
    if t is None or times == 1:
        return t
    return t.repeat(times, *([1] * (t.dim() - 1)))


class RoutingObjective(nn.Module, ABC):
    """Base of the router-training algorithms.

    Args:
        model: the routed model.
        likelihood: ``(output, y) -> (B,)`` log p(y | x, a) (default: categorical over logits).
        regularizers: routing regulariser weights.
        eval_mode: routing mode of :meth:`predict`: ``"auto"`` (soft routers stay soft, every other router
            takes its most probable modules), or any router mode.
    """

    def __init__(
        self,
        model: RoutedModel,
        *,
        likelihood: LogLikelihood | None = None,
        regularizers: RoutingRegularizers | None = None,
        eval_mode: str = "auto",
    ):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be an nn.Module with the RoutedModel call signature, got {type(model)}")
        self.model = model
        self.likelihood: LogLikelihood = likelihood or categorical_log_likelihood
        self.regularizers = regularizers or RoutingRegularizers()
        if eval_mode == "auto":
            routers = [m for m in model.modules() if isinstance(m, Router)]
            eval_mode = "soft" if routers and all(r.mode == "soft" for r in routers) else "argmax"
        self.eval_mode = eval_mode
        # a single-task table (n_tasks=1) routes every example as task 0 rightly; with more, "task" is needed
        self._needs_task = any(isinstance(m, Router) and (m.n_tasks or 1) > 1 for m in model.modules())
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    _needs_index = False

    @property
    def batch_keys(self) -> dict[str, str]:
        """The batch entries :meth:`loss` reads (see the module docstring)."""
        keys = {"x": "(B, ...) float inputs", "y": "(B, ...) targets"}
        if self._needs_task:
            keys["task"] = "(B,) long task ids: a router was built with n_tasks"
        if self._needs_index:
            keys["index"] = "(B,) long example ids in [0, dataset_size), for the per-example table"
        return keys

    @abstractmethod
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Named loss terms of one training step; ``"loss"`` is minimised, every term is logged."""

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return self.loss(batch)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        """(B, ...) the model's output under the evaluation routing."""
        x, task = self._x(batch), batch.get("task")
        if self._needs_task and task is None:
            raise ConfigError(f"{type(self).__name__}: a router was built with n_tasks, so batches need 'task'")
        with input_fits("x", x, type(self.model).__name__):
            return self.model(x, task=task, mode=self.eval_mode).output

    # ------------------------------------------------------------------ helpers for subclasses
    def _x(self, batch: Batch) -> Tensor:
        """``batch["x"]``, checked: a floating tensor of the model's dtype, finite."""
        if not isinstance(batch, Mapping) or "x" not in batch:
            raise ConfigError(f"a batch must be a mapping with keys 'x' and 'y', got {type(batch).__name__}")
        x = check_input(batch["x"], "x", self.model)
        if not bool(torch.isfinite(x).all()):
            step = int(self.steps) + 1
            raise NumericalError(f"step {step}: batch['x'] holds NaN or inf values", step=step,
                                 module=type(self.model).__name__, quantity="input 'x'")
        return x

    def _inputs(self, batch: Batch, *, need_index: bool) -> _Inputs:
        x = self._x(batch)
        task, index, y = batch.get("task"), batch.get("index"), batch.get("y")
        if self._needs_task and task is None:
            raise ConfigError(f"{type(self).__name__}: a router was built with n_tasks, so batches need 'task' "
                              "((B,) long task ids); without it every example would be routed as task 0")
        if y is None:
            raise ConfigError(f"{type(self).__name__}: the batch has no 'y' ((B, ...) targets)")
        if need_index:
            if index is None:
                raise ConfigError(
                    f"{type(self).__name__} keeps a table per training example and needs example ids: give "
                    "batches an 'index' entry, (B,) long ids in [0, dataset_size)"
                )
            if not isinstance(index, Tensor) or index.dim() != 1 or index.shape[0] != x.shape[0]:
                shape = tuple(index.shape) if isinstance(index, Tensor) else type(index).__name__
                raise ShapeError(f"batch['index'] must have shape (batch={x.shape[0]},), got {shape}")
        return _Inputs(x, y, task, index)

    def _run(
        self, x: Tensor, y: Tensor, task: Tensor | None, route: Tensor | None = None, samples: int = 1
    ) -> tuple[RoutedOutput, Tensor]:
        """The model on ``samples`` copies of the batch (sample-major) and log p(y | x, a) of each row."""
        with input_fits("x", x, type(self.model).__name__):
            out = self.model(x, route, task=task, samples=samples)
        return out, self.likelihood(out.output, repeat_rows(y, samples))

    def _router_nll(self, x: Tensor, y: Tensor, task: Tensor | None) -> Tensor:
        """() the mean -log p(y | x, a) under the router's evaluation routes (``eval_mode``), without gradient.

        Args:
            x: (B, ...) inputs, y: (B, ...) targets, task: (B,) task ids or ``None``.
        """
        with torch.no_grad(), input_fits("x", x, type(self.model).__name__):
            out = self.model(x, task=task, mode=self.eval_mode)
            return -self.likelihood(out.output, y).float().mean()

    def _finish(self, terms: dict[str, Tensor], route: RouteResult | None) -> dict[str, Tensor]:
        """Add the regularisers, the total ``loss`` and the (detached) routing diagnostics."""
        terms.update(self.regularizers.terms(route))
        terms["loss"] = torch.stack([v for k, v in terms.items() if k.startswith("loss_")]).sum()
        if route is not None:
            if not bool(torch.isfinite(route.probs).all()):
                step = int(self.steps) + 1
                raise NumericalError(f"step {step}: the router's probabilities hold NaN or inf", step=step,
                                     module=type(self.model).__name__, quantity="routing probabilities")
            probs = route.probs.detach().float()  # under bf16 autocast the rows sum to 1 only to ~1e-2
            stats = routing_stats(probs / probs.sum(-1, keepdim=True))
            terms["H(A)"] = route.probs.new_tensor(stats.entropy)
            terms["H(A|X)"] = route.probs.new_tensor(stats.conditional_entropy)
            terms["I(A;X)"] = route.probs.new_tensor(stats.mutual_information)
        self.steps += 1
        return terms


class RouterGap(nn.Module):
    """The router gap of an objective (see the module docstring): its logged terms, the moving averages of the
    gap and of ``nll_router`` (a buffer, saved with the objective) and the warning, given once.

    Args:
        threshold: the ``gap_warning`` of the objective's config: the share of the loss under the router's
            routes (at least 1 nat) that the gap must exceed on average (``None``: never warn).
    """

    def __init__(self, threshold: float | None):
        super().__init__()
        self.threshold = threshold
        self.register_buffer("average", torch.full((2,), float("nan")))  # (gap, nll_router); NaN: no step yet
        self.warned = False

    def observe(self, trained_nll: Tensor, router_nll: Tensor, *, step: int, owner: str) -> dict[str, Tensor]:
        """Record one step's gap and warn when its average has stayed above the threshold.

        Args:
            trained_nll: () mean -log p(y | x, a) under the routes trained on.
            router_nll: () the same under the router's evaluation routes.
            step: the 1-based step number (no warning before :data:`GAP_WARMUP`).
            owner: the objective's name, for the message.

        Returns:
            ``nll_trained``, ``nll_router`` and ``router_gap``, each () float32 without gradient.
        """
        # in data-parallel training, the means over every process: the same average and warning in all of them
        trained_nll, router_nll = all_mean(torch.stack([trained_nll.detach(), router_nll.detach()]).float())
        gap = router_nll - trained_nll
        now = torch.stack([gap, router_nll])
        average = now if bool(self.average.isnan().any()) else _GAP_DECAY * self.average + (1 - _GAP_DECAY) * now
        self.average.copy_(average)
        mean_gap, mean_router = float(average[0]), float(average[1])
        if (self.threshold is not None and not self.warned and step >= GAP_WARMUP
                and mean_gap > self.threshold * max(mean_router, 1.0)):
            self.warned = True
            warnings.warn(
                f"{owner}: the task loss under the router's own routes (on average {mean_router:.3g} nats) is "
                f"{mean_gap:.3g} nats above the loss under the routes it trains on, more than gap_warning="
                f"{self.threshold:g} of it. The training routes carry information about y that the router cannot "
                "predict from x (EM and the top-K buffer choose routes by how well they explain y), so predictions, "
                "made with the router's routes, will be worse than the training loss suggests. Give the router the "
                "inputs that determine the route, or compare with ExactMarginal or Reinforce, whose routes never "
                "see y.",
                RouterGapWarning,
                stacklevel=3,  # the caller of the objective's loss
            )
        return {"nll_trained": trained_nll, "nll_router": router_nll, "router_gap": gap}


class Baseline(nn.Module):
    """A REINFORCE baseline b, subtracted from the reward.

    Args:
        kind: ``"moving_average"`` (b = exponential moving average of the batch-mean reward), ``"learned"``
            (b(x) = ``net(x)``, trained by squared error to the reward) or ``"none"``.
        decay: the moving average's decay.
        net: the learned baseline's network, (B, ...) -> (B, 1) or (B,); default: a linear map of the
            flattened input.
    """

    def __init__(self, kind: str = "moving_average", *, decay: float = 0.9, net: nn.Module | None = None):
        super().__init__()
        if kind not in BASELINES:
            raise ConfigError(f"baseline must be one of {BASELINES}, got {kind!r}")
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"baseline decay must be in [0, 1), got {decay!r}")
        self.kind, self.decay = kind, float(decay)
        self.net = (net or nn.Sequential(nn.Flatten(), nn.LazyLinear(1))) if kind == "learned" else None
        self.register_buffer("value", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def advantage(self, reward: Tensor, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``reward - b`` (no gradient) and the baseline's own loss terms.

        Args:
            reward: (N,) rewards (no gradient) of N = S * B sampled routings, sample-major.
            x: (B, ...) the batch's inputs (for the learned baseline).

        Returns:
            (N,) advantages and ``{"loss_baseline": ...}`` for the learned kind.
        """
        reward = reward.detach()
        if self.kind == "none":
            return reward, {}
        if self.kind == "learned":
            assert self.net is not None
            b = self.net(x).reshape(x.shape[0])
            b_rows = b.repeat(reward.shape[0] // x.shape[0])
            return reward - b_rows.detach(), {"loss_baseline": (b_rows - reward).pow(2).mean()}
        mean = all_mean(reward.mean())  # the same baseline in every process of a data-parallel run
        if not bool(self.initialized):
            self.value.copy_(mean)
            self.initialized.fill_(True)
        advantage = reward - self.value
        self.value.mul_(self.decay).add_((1 - self.decay) * mean)
        return advantage, {}


def make_reward(ll: Tensor, kind: str) -> Tensor:
    """The reward of the research note: log p(y|x,a) or p(y|x,a) (no gradient)."""
    ll = ll.detach()
    return ll if kind == "log_likelihood" else ll.exp()


def check_reward(kind: str) -> None:
    if kind not in REWARDS:
        raise ConfigError(f"reward must be one of {REWARDS}, got {kind!r}")


def check_gap_warning(value: object, owner: str) -> None:
    """Raise ConfigError unless ``value`` (the ``gap_warning`` field of the config ``owner``) is ``None`` or a
    number > 0."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not value > 0):
        raise ConfigError(f"{owner}.gap_warning must be None or a number > 0 (a share of the loss under the "
                          f"router's routes), got {value!r}")
