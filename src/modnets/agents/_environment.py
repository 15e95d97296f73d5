"""The environment: the true state of a batch of problems, its dynamics and its target test."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor

__all__ = ["Environment"]


class Environment(ABC):
    """A batch of problem instances and their ground-truth dynamics (thesis 3.1).

    The environment holds the state of the problem, auxiliary elements included (pointers, markers,
    scratchpads). Agents never read it directly: an :class:`~modnets.agents.Interface` keeps it in sync
    with the representation R(t) they work on. :meth:`step` applies actions symbolically, the way a
    correct operator would; it generates expert traces and is the reference that operators are checked
    against.

    Subclasses define ``action_names`` (the last one is the stop action) and the methods below.
    """

    #: Names of the actions :meth:`step` understands, in index order; the last one is the stop action.
    action_names: tuple[str, ...] = ()

    @property
    def stop_action(self) -> int:
        """Index of the stop action (the last one)."""
        return len(self.action_names) - 1

    @abstractmethod
    def reset(self, *args: Any, **kwargs: Any) -> Any:
        """Start a new batch of problems; returns the initial state."""

    @property
    @abstractmethod
    def state(self) -> Any:
        """The current state (a named tuple of ``(batch, ...)`` tensors)."""

    @abstractmethod
    def set_state(self, state: Any) -> None:
        """Overwrite the current state (the interface does this when R(t) changed)."""

    @abstractmethod
    def step(self, actions: Tensor) -> Any:
        """Apply one action per example with the true dynamics; returns the new state.

        Args:
            actions: ``(batch,)`` long action indices; ``-1`` leaves an example unchanged, the stop action
                marks it :attr:`done`.
        """

    @property
    @abstractmethod
    def done(self) -> Tensor:
        """``(batch,)`` bool: examples whose episode ended with the stop action."""

    @abstractmethod
    def is_target(self) -> Tensor:
        """``(batch,)`` bool: examples whose current state solves the problem."""
