"""Recording an episode: the environment's state after every step of the perception-action loop."""

from __future__ import annotations

from typing import Any

import torch

from ._interface import Interface
from ._representation import Representation

__all__ = ["EpisodeRecorder"]


class EpisodeRecorder(Interface):
    """An interface that wraps another and keeps the environment's state after every read and write.

    An agent run through it (``agent.solve(recorder)``) leaves in :attr:`states` the state before the first
    step (the first read) and after each of its steps (every write), so that rewards can be computed from
    the true states the environment went through, not from the agent's soft representation. States are
    kept as the environment returns them (its ``state`` property), so the environment must not change a
    state in place once it has returned it.

    Args:
        interface: the interface to the environment.
        device: where R(t) goes on read (and comes back from on write); ``None``: where the wrapped
            interface puts it.

    Example:
        >>> from modnets.data import SortingEnvironment, SortingInterface
        >>> from modnets.models import sorting_agent, sorting_control, sorting_operators
        >>> env = SortingEnvironment()
        >>> _ = env.reset(torch.tensor([[2, 1]]))
        >>> agent = sorting_agent(operators=sorting_operators(reference=True),
        ...                       control=sorting_control(reference=True))
        >>> recorder = EpisodeRecorder(SortingInterface(env))
        >>> trace = agent.solve(recorder)
        >>> [s.values.tolist() for s in recorder.states]  # swap, mova, eop
        [[[2, 1]], [[1, 2]], [[1, 2]], [[1, 2]]]
    """

    def __init__(self, interface: Interface, *, device: torch.device | str | None = None) -> None:
        super().__init__(interface.environment)
        self.interface = interface
        self.device = None if device is None else torch.device(device)
        self.states: list[Any] = []
        self._home: torch.device | None = None

    def read(self) -> Representation:
        rep = self.interface.read()
        self._home = next(iter(rep.values())).device
        if not self.states:
            self.states.append(self.environment.state)
        return rep if self.device is None else rep.to(self.device)

    def write(self, rep: Representation) -> None:
        self.interface.write(rep if self._home is None else rep.to(self._home))
        self.states.append(self.environment.state)
