"""REINFORCE for routers (research note, "Module routing in detail").

The modules learn from the sampled routing as if it were given (maximise log p(y | x, a)); the router
learns by the score-function estimator ``grad log p(a | x) (R(a | x) - b)`` with the reward R = log p(y|x,a)
(Kirsch et al.) or p(y|x,a), minus a baseline b.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from .._checks import check_ints
from .._config import Config
from ..errors import ConfigError
from ..routing import RoutedModel
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
)

__all__ = ["Reinforce", "ReinforceConfig"]


@dataclass
class ReinforceConfig(Config):
    """Settings of :class:`Reinforce`.

    Attributes:
        samples: routings sampled per example and step (S); the gradient averages over them.
        reward: ``"log_likelihood"`` or ``"likelihood"``.
        baseline: ``"moving_average"``, ``"learned"`` or ``"none"``.
        baseline_decay: decay of the moving-average baseline.
        regularizers: entropy bonus, load balancing, I(A;X) weights.
        gap_warning: warn (once, :class:`~modnets.train.RouterGapWarning`) when the moving average of the
            logged ``router_gap`` exceeds this share of the average loss under the router's routes (of 1
            nat, when that is smaller); ``None`` never warns. Sampled routes never see ``y``, so under
            REINFORCE the gap stays near or below 0.
    """

    samples: int = 1
    reward: str = "log_likelihood"
    baseline: str = "moving_average"
    baseline_decay: float = 0.9
    regularizers: RoutingRegularizers = field(default_factory=RoutingRegularizers)
    gap_warning: float | None = 0.5

    def __post_init__(self) -> None:
        check_ints(self, "samples")
        check_reward(self.reward)
        check_gap_warning(self.gap_warning, "ReinforceConfig")
        if self.baseline not in BASELINES:
            raise ConfigError(f"ReinforceConfig.baseline must be one of {BASELINES}, got {self.baseline!r}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ConfigError(f"ReinforceConfig.baseline_decay must be in [0, 1), got {self.baseline_decay!r}")


class Reinforce(RoutingObjective):
    """REINFORCE with a baseline and an entropy bonus, for any routed model.

    Loss terms: ``loss_task = -mean log p(y | x, a)`` over the sampled routings (trains the modules),
    ``loss_router = -mean (R - b) log p(a | x)`` (trains the router), ``loss_baseline`` (learned baseline),
    the regularisers, and the logged ``reward`` and router gap (``nll_trained`` under the sampled routes,
    ``nll_router``, ``router_gap``; see :class:`~modnets.train.RouterGapWarning`).

    Args:
        model: the routed model (e.g. :class:`~modnets.routing.ModularStack` with sampling routers).
        config: settings.
        likelihood: log p(y | x, a) per example (default: categorical).
        baseline_net: network of the learned baseline (default: linear in the flattened input).

    Example:
        >>> import torch
        >>> from modnets.routing import MLPExperts, ModularLayer, ModularStack, Router
        >>> bank = MLPExperts(n_modules=4, d_in=6, d_hidden=8, d_out=3)
        >>> net = ModularStack(layers=[ModularLayer(modules=bank,
        ...                                         router=Router(n_modules=4, d_in=6))])
        >>> objective = Reinforce(net, ReinforceConfig(samples=2))
        >>> terms = objective.loss({"x": torch.randn(8, 6), "y": torch.randint(0, 3, (8,))})
        >>> terms["loss"].backward()
        >>> sorted(k for k in terms if k.startswith("loss"))
        ['loss', 'loss_router', 'loss_task']
    """

    def __init__(
        self,
        model: RoutedModel,
        config: ReinforceConfig | None = None,
        *,
        likelihood: LogLikelihood | None = None,
        baseline_net: nn.Module | None = None,
        eval_mode: str = "auto",
    ):
        self.config = config or ReinforceConfig()
        super().__init__(model, likelihood=likelihood, regularizers=self.config.regularizers, eval_mode=eval_mode)
        self.baseline = Baseline(self.config.baseline, decay=self.config.baseline_decay, net=baseline_net)
        self.gap = RouterGap(self.config.gap_warning)

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        x, y, task, _ = self._inputs(batch, need_index=False)
        s = self.config.samples
        out, ll = self._run(x, y, task, samples=s)  # (S * B,)
        reward = make_reward(ll, self.config.reward)
        advantage, terms = self.baseline.advantage(reward, x)
        terms.update(loss_task=-ll.mean(), loss_router=-(advantage * out.route.log_prob).mean(), reward=reward.mean())
        terms.update(self.gap.observe(-ll.mean(), self._router_nll(x, y, task), step=int(self.steps) + 1,
                                      owner=type(self).__name__))
        return self._finish(terms, out.route)
