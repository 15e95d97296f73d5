"""Execution traces: the actions an agent (or an expert) took, and optionally every R(t) on the way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import ShapeError
from ._representation import Representation

__all__ = ["Trace", "Transitions"]


class Transitions(NamedTuple):
    """Every application of one action in a trace: R(t) before it and R(t+1) after it.

    Attributes:
        before: fields ``(n, ...)``.
        after: fields ``(n, ...)``.
    """

    before: Representation
    after: Representation


@dataclass
class Trace:
    """What happened during a run of the perception-action loop, for a batch of examples.

    Attributes:
        actions: ``(batch, steps)`` long action taken at each step; ``-1`` once an example has stopped.
        steps: ``(batch,)`` long number of actions each example took (its stop action included).
        stopped: ``(batch,)`` bool, whether the example took the stop action (rather than hitting the bound).
        final: the representation after the last step.
        logits: ``(batch, steps, n_actions)`` the controller's scores at each step, zero once an example has
            stopped (``None`` for expert traces).
        representations: fields ``(batch, steps + 1, ...)``: R(0) ... R(steps); once an example has stopped
            its representation is repeated (``None`` unless recorded).
    """

    actions: Tensor
    steps: Tensor
    stopped: Tensor
    final: Representation
    logits: Tensor | None = None
    representations: Representation | None = None

    def to(self, device: torch.device | str) -> Trace:
        """The trace with every tensor on ``device``."""
        return Trace(self.actions.to(device), self.steps.to(device), self.stopped.to(device), self.final.to(device),
                     None if self.logits is None else self.logits.to(device),
                     None if self.representations is None else self.representations.to(device))

    @property
    def active(self) -> Tensor:
        """``(batch, steps)`` bool: the steps each example actually took."""
        return self.actions >= 0

    @property
    def previous(self) -> Tensor:
        """``(batch, steps)`` long: the action before each step (``-1`` at the first), for teacher forcing."""
        first = torch.full_like(self.actions[:, :1], -1)
        return torch.cat([first, self.actions[:, :-1]], dim=1)

    def transitions(self, action: int) -> Transitions:
        """All ``(R(t), R(t+1))`` pairs where ``action`` was taken (needs recorded representations).

        Raises:
            ShapeError: the trace has no recorded representations.
        """
        if self.representations is None:
            raise ShapeError("this trace has no recorded representations; run the agent with record=True")
        b, t = (self.actions == action).nonzero(as_tuple=True)
        before = self.representations.map(lambda x: x[b, t])
        after = self.representations.map(lambda x: x[b, t + 1])
        return Transitions(before, after)
