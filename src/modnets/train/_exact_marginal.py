"""The exact marginal likelihood of a routed stack: every joint routing enumerated (research note, "Module
routing in detail").

``p(y | x) = sum_a p(y | x, a) p(a | x)`` over all joint routings a of a :class:`~modnets.routing.ModularStack`
is differentiable in the modules and the routers alike, so maximising ``log p(y | x)`` trains both by
plain backpropagation, with no estimator. It is intractable in general (the routings multiply across
layers), but on small routing spaces it is the reference every estimator (REINFORCE, EM, the top-K
buffer, Gumbel) can be compared against.

It is also the note's *soft routing as a mixture of outputs*: "think of module weights as probabilities;
instead of summing module outputs, sum probabilities of each possible output". For one routed layer
feeding a classifier this is ``p(y | x) = sum_m p(m | x) p(y | x, m)``, a mixture of the M modules'
output distributions weighted by the router, where ``Router(mode="soft")`` instead mixes the modules'
features inside the network. The routers' own ``mode`` does not matter here (every routing is
enumerated and scored by its log-probability); a ``"soft"`` layer counts as one routing that mixes
features, as it would in any forward pass.

Cost: R * B rows per step for R joint routings, forward and backward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._checks import check_ints
from .._config import Config
from ..errors import ConfigError
from ..routing import ModularStack, RoutedOutput
from ._likelihood import LogLikelihood
from ._objective import input_fits
from ._regularizers import RoutingRegularizers
from ._routing_objective import Batch, RoutingObjective, repeat_rows

__all__ = ["PREDICTIONS", "ExactMarginal", "ExactMarginalConfig"]

#: What :meth:`ExactMarginal.predict` returns (``ExactMarginalConfig.prediction``).
PREDICTIONS = ("categorical", "mean")


@dataclass
class ExactMarginalConfig(Config):
    """Settings of :class:`ExactMarginal`.

    Attributes:
        max_routings: refuse a stack with more joint routings than this (each step runs R * B rows).
        prediction: what :meth:`ExactMarginal.predict` returns: ``"categorical"`` (the model's outputs
            are class logits: (B, C) log-probabilities of the mixture, ``log sum_a p(a|x) softmax(out_a)``,
            usable as logits) or ``"mean"`` (the mixture's mean output ``sum_a p(a|x) out_a``, (B, ...),
            e.g. for a Gaussian likelihood).
        regularizers: entropy bonus, load balancing, I(A;X) weights (on the probabilities of the
            enumerated rows).
    """

    max_routings: int = 65_536
    prediction: str = "categorical"
    regularizers: RoutingRegularizers = field(default_factory=RoutingRegularizers)

    def __post_init__(self) -> None:
        check_ints(self, "max_routings")
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"ExactMarginalConfig.prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if not isinstance(self.regularizers, RoutingRegularizers):
            raise ConfigError(f"ExactMarginalConfig.regularizers must be a RoutingRegularizers, got "
                              f"{self.regularizers!r}")


class ExactMarginal(RoutingObjective):
    """Minimise ``-log sum_a p(y | x, a) p(a | x)`` over every joint routing of a stack (see the module
    docstring): the exact marginal likelihood, and the mixture-of-outputs form of soft routing.

    Loss terms: ``loss_task`` (the mean negative log marginal likelihood), the regularisers, and the
    logged ``H(A|X,Y)``, the mean entropy of the posterior ``p(a | x, y)`` over the routings (0 when the
    label pins the routing down). The routing diagnostics are computed from the probabilities of all
    R * B enumerated rows (exact for one layer; for later layers of dynamic routers, an average over the
    enumerated upstream routings).

    Args:
        model: the :class:`~modnets.routing.ModularStack` (its routers' ``choices`` are enumerated).
        config: settings.
        likelihood: log p(y | x, a) per example (default: categorical over logits).

    Raises:
        ConfigError: a model that is not a ModularStack; more joint routings than ``max_routings``.

    Example:
        >>> import torch
        >>> from modnets.routing import MLPExperts, ModularLayer, ModularStack, Router
        >>> bank = MLPExperts(n_modules=4, d_in=6, d_hidden=8, d_out=3)
        >>> net = ModularStack(layers=[ModularLayer(modules=bank, router=Router(n_modules=4, d_in=6))])
        >>> objective = ExactMarginal(net)  # 4 routings: p(y|x) = sum_m p(m|x) p(y|x,m)
        >>> batch = {"x": torch.randn(8, 6), "y": torch.randint(0, 3, (8,))}
        >>> objective.loss(batch)["loss"].backward()
        >>> torch.allclose(objective.predict(batch).exp().sum(1), torch.ones(8))  # a distribution per row
        True
    """

    def __init__(
        self,
        model: ModularStack,
        config: ExactMarginalConfig | None = None,
        *,
        likelihood: LogLikelihood | None = None,
    ):
        self.config = config or ExactMarginalConfig()
        if not isinstance(model, ModularStack):
            raise ConfigError(f"ExactMarginal enumerates the routings of a ModularStack, got {type(model).__name__}")
        super().__init__(model, likelihood=likelihood, regularizers=self.config.regularizers)
        # (R, L, k), the same for every batch; moves with the objective's device, not saved
        self.register_buffer("routings", model.routings(limit=self.config.max_routings), persistent=False)

    def _enumerate(self, x: Tensor, task: Tensor | None) -> tuple[RoutedOutput, Tensor]:
        """The model on every routing of every example: its output (R * B, ...) routing-major (row r * B + n is
        routing r of example n), and log p(a | x) as (R, B)."""
        r, b = self.routings.shape[0], x.shape[0]
        with input_fits("x", x, type(self.model).__name__):
            out = self.model(x, self.routings.repeat_interleave(b, dim=0), task=task, samples=r)
        return out, out.route.log_prob.view(r, b)

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        x, y, task, _ = self._inputs(batch, need_index=False)
        out, log_prior = self._enumerate(x, task)
        r, b = log_prior.shape
        joint = self.likelihood(out.output, repeat_rows(y, r)).view(r, b) + log_prior  # (R, B)
        log_marginal = torch.logsumexp(joint, dim=0)  # (B,)
        with torch.no_grad():
            posterior = torch.log_softmax(joint.float(), dim=0)
            posterior_entropy = -(posterior.exp() * posterior).nan_to_num(0.0).sum(0).mean()
        terms = {"loss_task": -log_marginal.mean(), "H(A|X,Y)": posterior_entropy}
        return self._finish(terms, out.route)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        """The mixture's prediction over every routing (``config.prediction``).

        Returns:
            (B, C) log-probabilities of the mixture for ``"categorical"``; (B, ...) its mean output for
            ``"mean"``.
        """
        x, task = self._x(batch), batch.get("task")
        if self._needs_task and task is None:
            raise ConfigError(f"{type(self).__name__}: a router was built with n_tasks, so batches need 'task'")
        out, log_prior = self._enumerate(x, task)
        r, b = log_prior.shape
        outputs = out.output.view(r, b, *out.output.shape[1:])
        if self.config.prediction == "categorical":
            if outputs.dim() != 3:
                raise ConfigError(f"prediction='categorical' reads the model's outputs as (B, C) class logits, got "
                                  f"outputs of shape {tuple(out.output.shape[1:])} per row; use prediction='mean'")
            return torch.logsumexp(log_prior[..., None] + torch.log_softmax(outputs, dim=-1), dim=0)
        weights = log_prior.exp().view(r, b, *([1] * (outputs.dim() - 2))).to(outputs.dtype)
        return (weights * outputs).sum(0)
