"""``ModularStack``: modular layers one after another, between an optional encoder and head.

The stack is the routed model every router-training algorithm of :mod:`modnets.train` works with: given an
input it samples (or is given) one routing per layer, and returns the output together with the whole
routing, so that ``log p(y | x, a)`` and ``log p(a | x)`` are both at hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._layer import ModularLayer
from ._router import RouteResult, stack_routes

__all__ = ["ModularStack", "RoutedModel", "RoutedOutput"]


class RoutedOutput(NamedTuple):
    """What a routed model returns.

    Attributes:
        output: (B, ...) the head's output (logits, a regression estimate, ...).
        route: the routing of all layers, choice (B, L, k), log_prob (B,), probs (B, L, M); ``None`` for a
            model without routing (a dense baseline).
    """

    output: Tensor
    route: RouteResult | None


class RoutedModel(Protocol):
    """The call signature the router-training algorithms rely on (``ModularStack`` has it)."""

    def __call__(
        self,
        x: Tensor,
        route: Tensor | None = None,
        *,
        task: Tensor | None = None,
        generator: torch.Generator | None = None,
        mode: str | None = None,
        samples: int = 1,
    ) -> RoutedOutput: ...


class ModularStack(nn.Module):
    """``head(layer_L(... act(layer_1(encoder(x) [+ task_embedding(task)]))))``: L modular layers, each routed
    by its own router (or by one shared multi-layer router, through each layer's ``layer`` index).

    Args:
        layers: the :class:`ModularLayer` s, applied in order; they must all pick the same number of
            modules per example (k for hard routers, all M for soft ones), so that their routings stack.
        encoder: applied to the input first (``None``: identity).
        head: applied to the last layer's output (``None``: identity).
        activation: applied between consecutive modular layers (``None``: nothing).
        task_embedding: maps (B,) task ids to (B, d) vectors added to the encoder's output, for models whose
            modules (not only routers) should see the task, such as a dense multi-task baseline.

    Example:
        >>> from modnets.routing import MLPExperts, ModularLayer, Router
        >>> def layer():
        ...     bank = MLPExperts(n_modules=4, d_in=8, d_hidden=16, d_out=8)
        ...     return ModularLayer(modules=bank, router=Router(n_modules=4, d_in=8))
        >>> net = ModularStack(layers=[layer(), layer()], head=nn.Linear(8, 3))
        >>> out = net(torch.randn(5, 8))
        >>> out.output.shape, out.route.choice.shape, out.route.log_prob.shape
        (torch.Size([5, 3]), torch.Size([5, 2, 1]), torch.Size([5]))
        >>> again = net(torch.randn(5, 8), route=out.route.choice)  # score and run a given routing
    """

    def __init__(
        self,
        *,
        layers: Sequence[ModularLayer],
        encoder: nn.Module | None = None,
        head: nn.Module | None = None,
        activation: nn.Module | None = None,
        task_embedding: nn.Module | None = None,
    ):
        super().__init__()
        layers = list(layers)
        if not layers:
            raise ConfigError("ModularStack needs at least one ModularLayer, got none")
        bad = [type(layer).__name__ for layer in layers if not isinstance(layer, ModularLayer)]
        if bad:
            raise ConfigError(f"layers must be ModularLayer instances, got {', '.join(bad)}")
        picks = {layer.n_modules if layer.router.mode == "soft" else layer.k for layer in layers}
        if len(picks) > 1:
            raise ConfigError(f"every layer must pick the same number of modules per example, got {sorted(picks)}")
        self.layers = nn.ModuleList(layers)
        self.encoder = encoder if encoder is not None else nn.Identity()
        self.head = head if head is not None else nn.Identity()
        self.activation = activation
        self.task_embedding = task_embedding

    @property
    def n_layers(self) -> int:
        """L, the number of routed layers."""
        return len(self.layers)

    def routings(self, *, limit: int | None = 65_536) -> Tensor:
        """Every joint routing of the stack, for exact enumeration on small routing spaces.

        The layers' choices (:meth:`Router.choices`) are combined in every way, the last layer varying
        fastest; the result can be passed (repeated per example) as ``route`` to :meth:`forward`.

        Args:
            limit: refuse more than this many joint routings (``None``: no limit).

        Returns:
            (R, L, k) long module ids; R is the product of the layers' :meth:`Router.n_choices`.

        Raises:
            ConfigError: R exceeds ``limit``; the message gives R and each layer's number of choices.
        """
        counts = [layer.router.n_choices() for layer in self.layers]
        total = math.prod(counts)
        if limit is not None and total > limit:
            raise ConfigError(f"the stack has {total:,} joint routings ({' x '.join(map(str, counts))} choices per "
                              f"layer), more than limit={limit:,} allows enumerating")
        choices = [layer.router.choices() for layer in self.layers]  # (C_l, k) each
        grid = torch.meshgrid(*[torch.arange(c.shape[0], device=c.device) for c in choices], indexing="ij")
        return torch.stack([c[g.reshape(-1)] for c, g in zip(choices, grid, strict=True)], dim=1)

    def forward(
        self,
        x: Tensor,
        route: Tensor | None = None,
        *,
        task: Tensor | None = None,
        generator: torch.Generator | None = None,
        mode: str | None = None,
        samples: int = 1,
    ) -> RoutedOutput:
        """Run the stack, routing every layer or following a given routing.

        Args:
            x: (B, ...) inputs of the encoder.
            route: ``None`` to let the routers choose; or (S * B, L, k) long module ids, one row of picks per
                layer, which the routers score (the returned ``log_prob`` is log p(route | x)).
            task: (B,) long task ids for routers built with ``n_tasks``.
            generator: random source of the routers.
            mode: routing mode for every layer instead of the routers' own (e.g. ``"argmax"`` at test time).
            samples: S, routings per example: the encoder runs once, then its output is repeated S times
                (sample-major: row s * B + n is example n) and each copy is routed on its own, as the E-step
                of EM and REINFORCE with several samples need.

        Returns:
            :class:`RoutedOutput`: output (S * B, ...), route with choice (S * B, L, k), log_prob (S * B,),
            probs (S * B, L, M).

        Raises:
            ShapeError: ``route`` is not (S * B, L, k) long.
            ConfigError: ``samples`` < 1; task ids missing for a model with a task embedding.
        """
        if not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"samples must be a positive int, got {samples!r}")
        rows = samples * x.shape[0]
        if route is not None:
            if not isinstance(route, Tensor) or route.dim() != 3 or route.shape[:2] != (rows, self.n_layers):
                shape = tuple(route.shape) if isinstance(route, Tensor) else type(route).__name__
                raise ShapeError(
                    f"route must have shape (samples * batch={rows}, layers={self.n_layers}, k), got {shape}"
                )
        h = self.encoder(x)
        if self.task_embedding is not None:
            if task is None:
                raise ConfigError("this ModularStack has a task_embedding and needs task ids (task=...)")
            h = h + self.task_embedding(task)
        if samples > 1:
            h = h.repeat(samples, *([1] * (h.dim() - 1)))
            task = None if task is None else task.repeat(samples)
        routes = []
        for index, layer in enumerate(self.layers):
            if index and self.activation is not None:
                h = self.activation(h)
            given = None if route is None else route[:, index : index + 1]
            h, r = layer(h, given, task=task, generator=generator, mode=mode)
            routes.append(r)
        return RoutedOutput(self.head(h), stack_routes(routes))
