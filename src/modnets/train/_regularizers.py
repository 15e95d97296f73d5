"""Routing regularisers: an entropy bonus, a load-balancing loss and an I(A;X) term.

All three read a :class:`~modnets.routing.RouteResult` and are differentiable in the router's
probabilities. The mutual-information term uses the batch estimates of the research note (H(A) from the
batch-mean distribution, H(A|X) from the mean per-example entropy), summed over layers: the sum of the
layers' I(A_l; X), an upper bound on the joint I(A; X) that needs no enumeration of routings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor

from .._config import Config
from ..errors import ConfigError
from ..routing import RouteResult, entropy, switch_balance_loss

__all__ = ["RoutingRegularizers", "mutual_information_estimate", "policy_entropy"]


def policy_entropy(probs: Tensor) -> Tensor:
    """H(A | X = x) per example, summed over layers: probs (B, L, M) -> (B,)."""
    return entropy(probs).sum(-1)


def mutual_information_estimate(probs: Tensor) -> Tensor:
    """Batch estimate of sum_l I(A_l; X) = sum_l [H(mean_x p(a_l|x)) - mean_x H(p(a_l|x))].

    Args:
        probs: (B, L, M) routing distributions.

    Returns:
        () differentiable estimate, in nats.
    """
    return (entropy(probs.mean(0)) - entropy(probs).mean(0)).sum()


@dataclass
class RoutingRegularizers(Config):
    """Weights of the routing regularisers (0 switches one off).

    Attributes:
        entropy_bonus: beta of ``-beta * mean_x H(A | X = x)``: keeps the policy exploring (A3C-style).
        load_balance: weight of :func:`~modnets.routing.switch_balance_loss`.
        mutual_information: weight of ``-I(A; X)`` (:func:`mutual_information_estimate`): rewards routings
            that use every module (high H(A)) and are sure per input (low H(A|X)).
    """

    entropy_bonus: float = 0.0
    load_balance: float = 0.0
    mutual_information: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"RoutingRegularizers.{name} must be a number >= 0, got {value!r}")

    def terms(self, route: RouteResult | None) -> dict[str, Tensor]:
        """The weighted, non-zero regulariser terms, named ``loss_entropy``, ``loss_balance``, ``loss_mi``."""
        out: dict[str, Tensor] = {}
        if route is None:
            return out
        if self.entropy_bonus:
            out["loss_entropy"] = -self.entropy_bonus * policy_entropy(route.probs).mean()
        if self.load_balance:
            out["loss_balance"] = self.load_balance * switch_balance_loss(route)
        if self.mutual_information:
            out["loss_mi"] = -self.mutual_information * mutual_information_estimate(route.probs)
        return out
