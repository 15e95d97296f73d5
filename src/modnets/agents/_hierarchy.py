"""Agents as operators: hierarchies of agents, and recursion bounded by depth."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ._agent import Agent
from ._operator import Operator
from ._representation import Representation

__all__ = ["AgentOperator"]

Enter = Callable[[Representation], Representation]
Leave = Callable[[Representation, Representation], Representation]


def _same(rep: Representation) -> Representation:
    return rep


def _take_inner(outer: Representation, inner: Representation) -> Representation:
    return inner


class AgentOperator(Operator):
    """A whole agent used as one operator of a higher-level agent (thesis 3.1.1).

    The selective input (``enter``) plays the role of the sub-agent's interface: it turns the caller's
    R(t) into the sub-agent's representation of its sub-problem. The functional is the sub-agent's
    perception-action loop, run until it stops; the selective update (``leave``) writes its final
    representation back into the caller's.

    With ``agent=None`` the operator runs the agent that applies it (recursion). Recursion, and any
    hierarchy, is bounded by ``max_depth``: called deeper than that, the operator leaves R(t) unchanged.

    Args:
        name: the action name.
        agent: the sub-agent, or ``None`` for the calling agent itself.
        enter: caller's R(t) -> sub-agent's R(0) (default: the same representation).
        leave: ``(caller's R(t), sub-agent's final R) -> caller's R(t+1)`` (default: the sub-agent's final R).
        max_depth: the deepest call (the top-level agent's operators run at depth 1) that still runs.
        max_steps: the sub-agent's step bound (default: its own).
    """

    def __init__(
        self,
        name: str,
        *,
        agent: Agent | None = None,
        enter: Enter = _same,
        leave: Leave = _take_inner,
        max_depth: int = 8,
        max_steps: int | None = None,
    ) -> None:
        super().__init__(name)
        if agent is not None and not isinstance(agent, Agent):
            raise ConfigError(f"operator {name!r}: agent must be an Agent or None, got {type(agent).__name__}")
        if not isinstance(max_depth, int) or max_depth < 1:
            raise ConfigError(f"operator {name!r}: max_depth must be a positive int, got {max_depth!r}")
        self.agent = agent
        self.enter = enter
        self.leave = leave
        self.max_depth = max_depth
        self.max_steps = max_steps

    def select(self, rep: Representation) -> Representation:
        return self.enter(rep)

    def apply(self, selected: Representation, *, depth: int = 0, caller: Agent | None = None) -> Representation | None:
        """Run the sub-agent from ``selected``; ``None`` when the call is deeper than ``max_depth``."""
        if depth > self.max_depth:
            return None
        agent = self.agent if self.agent is not None else caller
        if agent is None:
            raise ConfigError(f"operator {self.name!r} is recursive (agent=None) but was called outside an agent")
        return agent(selected, max_steps=self.max_steps, depth=depth).final

    def update(self, rep: Representation, result: Representation | None) -> Representation:
        return rep if result is None else self.leave(rep, result)

    def extra_repr(self) -> str:
        target = "caller (recursive)" if self.agent is None else "sub-agent"
        return f"name={self.name!r}, runs={target}, max_depth={self.max_depth}"
