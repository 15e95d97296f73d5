"""End-to-end training of routed models: soft routing (a weighted sum over all modules), straight-through
Gumbel-softmax with an annealed temperature, or any model trained by plain backpropagation (the dense
baseline)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from .._config import Config
from ..errors import ConfigError
from ..routing import RoutedModel, Router
from ._likelihood import LogLikelihood
from ._regularizers import RoutingRegularizers
from ._routing_objective import Batch, RoutingObjective

__all__ = ["EndToEnd", "EndToEndConfig"]


@dataclass
class EndToEndConfig(Config):
    """Settings of :class:`EndToEnd`.

    Attributes:
        anneal_tau: set the temperature of every ``"gumbel"`` router by its :meth:`Router.anneal_tau`
            schedule at each step.
        regularizers: entropy bonus, load balancing, I(A;X) weights.
    """

    anneal_tau: bool = True
    regularizers: RoutingRegularizers = field(default_factory=RoutingRegularizers)

    def __post_init__(self) -> None:
        if not isinstance(self.anneal_tau, bool):
            raise ConfigError(f"EndToEndConfig.anneal_tau must be True or False, got {self.anneal_tau!r}")
        if not isinstance(self.regularizers, RoutingRegularizers):
            raise ConfigError(f"EndToEndConfig.regularizers must be a RoutingRegularizers, got {self.regularizers!r}")


class EndToEnd(RoutingObjective):
    """Minimise ``-log p(y | x, a)`` by backpropagation through the routing (soft or straight-through Gumbel
    routers) or through a model without routing.

    Loss terms: ``loss_task``, the regularisers, and the logged ``tau`` of Gumbel routers.

    Args:
        model: the routed model, or any module with the same call signature that returns ``route=None``.
        config: settings.
        likelihood: log p(y | x, a) per example (default: categorical).

    Example:
        >>> import torch
        >>> from modnets.routing import MLPExperts, ModularLayer, ModularStack, Router
        >>> bank = MLPExperts(n_modules=4, d_in=6, d_hidden=8, d_out=3)
        >>> net = ModularStack(layers=[ModularLayer(modules=bank,
        ...                                         router=Router(n_modules=4, d_in=6, mode="gumbel"))])
        >>> objective = EndToEnd(net)
        >>> objective.loss({"x": torch.randn(8, 6), "y": torch.randint(0, 3, (8,))})["loss"].backward()
        >>> net.layers[0].router.nets[0].weight.grad is not None
        True
    """

    def __init__(
        self,
        model: RoutedModel,
        config: EndToEndConfig | None = None,
        *,
        likelihood: LogLikelihood | None = None,
        eval_mode: str = "auto",
    ):
        self.config = config or EndToEndConfig()
        super().__init__(model, likelihood=likelihood, regularizers=self.config.regularizers, eval_mode=eval_mode)
        self._gumbel = [m for m in model.modules() if isinstance(m, Router) and m.mode == "gumbel"]

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        x, y, task, _ = self._inputs(batch, need_index=False)
        terms: dict[str, Tensor] = {}
        if self.config.anneal_tau and self._gumbel:
            for router in self._gumbel:
                tau = router.anneal_tau(int(self.steps))
            terms["tau"] = x.new_tensor(tau)
        out, ll = self._run(x, y, task)
        terms["loss_task"] = -ll.mean()
        return self._finish(terms, out.route)
