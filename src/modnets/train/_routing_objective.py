"""What the router-training algorithms share: the batch they read, the evaluation routing, the logged
routing diagnostics, the reward and its baseline.

A routing objective wraps a routed model (:class:`~modnets.routing.ModularStack`, or anything with its call
signature) and turns a batch into named loss terms; ``"loss"`` is their sum. It is an
:class:`~modnets.train.Objective`: pass it to :func:`~modnets.train.fit`, which trains its parameters (the
model's, plus a learned baseline). Batches are mappings with

- ``"x"``: (B, ...) inputs; ``"y"``: (B, ...) targets;
- ``"task"``: (B,) long task ids, needed when a router was built with ``n_tasks``;
- ``"index"``: (B,) long example ids in [0, dataset_size), needed by the algorithms that keep a table per
  example (generalised EM, the top-K buffer).
"""

from __future__ import annotations

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

__all__ = ["REWARDS", "Batch", "RoutingObjective", "repeat_rows"]

REWARDS = ("log_likelihood", "likelihood")
BASELINES = ("moving_average", "learned", "none")


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
