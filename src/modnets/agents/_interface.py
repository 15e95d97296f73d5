"""The interface: keeps an environment and its representation R(t) in sync, both ways."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ._environment import Environment
from ._representation import Representation

__all__ = ["Interface"]


class Interface(ABC):
    """Keeps an environment and its representation R(t) in sync (thesis 3.1).

    :meth:`read` reflects the environment's current state in a representation; :meth:`write` forwards
    the changes an agent made in a representation back to the environment. An agent reads once at the
    start and writes after every step, so the environment always reflects what the agent did; reading
    again picks up changes made in the environment itself.

    Args:
        environment: the environment this interface is bound to.
    """

    def __init__(self, environment: Environment) -> None:
        self.environment = environment

    @abstractmethod
    def read(self) -> Representation:
        """R(t) of the environment's current state."""

    @abstractmethod
    def write(self, rep: Representation) -> None:
        """Make the environment's state the one that ``rep`` represents (decoding soft values)."""
