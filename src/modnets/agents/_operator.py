"""Operators: selective input, functional, selective update, behind a uniform R(t) -> R(t+1) interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._representation import Representation

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = ["ModuleOperator", "Operator"]


class Operator(nn.Module, ABC):
    """A primitive operation of an agent (thesis 3.1, Fig. 3.2): R(t) in, R(t+1) out.

    Every operator has the same three parts, so that implementations can be swapped without touching
    the agent, the controller or the other operators:

    - :meth:`select`, the selective input: picks from R(t) only what the functional needs;
    - :meth:`apply`, the functional: the operation itself, neural or hand-written;
    - :meth:`update`, the selective update: writes the functional's result back into R(t).

    ``forward(rep)`` runs the three. ``depth`` counts how many agents deep the call is and ``caller`` is
    the agent that applies the operator; only operators that run agents use them (hierarchy and recursion,
    see :class:`~modnets.agents.AgentOperator`).

    Args:
        name: the operator's name (the action name the controller selects).
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        if not isinstance(name, str) or not name:
            raise ConfigError(f"an operator needs a non-empty name, got {name!r}")
        self.name = name

    @abstractmethod
    def select(self, rep: Representation) -> Any:
        """Selective input: the part of ``rep`` the functional consumes."""

    @abstractmethod
    def apply(self, selected: Any, *, depth: int = 0, caller: Agent | None = None) -> Any:
        """The functional: the operation on the selected input."""

    @abstractmethod
    def update(self, rep: Representation, result: Any) -> Representation:
        """Selective update: ``rep`` with the functional's ``result`` written into it."""

    def forward(self, rep: Representation, *, depth: int = 0, caller: Agent | None = None) -> Representation:
        """R(t) -> R(t+1).

        Args:
            rep: fields of shape ``(batch, ...)``.
            depth: how many agents deep this call is (the top-level agent's operators run at depth 1).
            caller: the agent applying this operator.

        Returns:
            the updated representation, same fields and shapes.
        """
        return self.update(rep, self.apply(self.select(rep), depth=depth, caller=caller))


class ModuleOperator(Operator):
    """An operator whose functional is a module (or function) of tensors: neural or hand-written.

    The selective input passes the fields named in ``reads`` to the functional, in order; the selective
    update writes its output into the field ``writes``, keeping only the first ``keep`` entries of the
    last dimension when ``keep`` is set (a functional may have a wider output vocabulary than the
    representation, e.g. an extra *null* class, thesis 3.2.2).

    Args:
        name: the action name.
        functional: called as ``functional(*fields)``; an ``nn.Module`` (neural, e.g. a
            :class:`~modnets.modules.TypedModule`) or a plain function (hand-written).
        reads: names of the fields the functional consumes.
        writes: name of the field its output replaces.
        keep: keep this many entries of the output's last dimension (``None``: all).

    Example:
        >>> import torch
        >>> shift = ModuleOperator("mova", functional=lambda p: torch.roll(p, 1, dims=-1), reads=("a",),
        ...                        writes="a")
        >>> shift(Representation(a=torch.tensor([[1.0, 0.0, 0.0]])))["a"]
        tensor([[0., 1., 0.]])
    """

    def __init__(
        self,
        name: str,
        *,
        functional: nn.Module | Callable[..., Tensor],
        reads: Sequence[str],
        writes: str,
        keep: int | None = None,
    ) -> None:
        super().__init__(name)
        reads = tuple(reads)
        if not reads or not all(isinstance(r, str) for r in reads):
            raise ConfigError(f"operator {name!r}: reads must name at least one field, got {reads!r}")
        if not isinstance(writes, str):
            raise ConfigError(f"operator {name!r}: writes must name a field, got {writes!r}")
        if keep is not None and (not isinstance(keep, int) or keep < 1):
            raise ConfigError(f"operator {name!r}: keep must be a positive int or None, got {keep!r}")
        if not callable(functional):
            raise ConfigError(f"operator {name!r}: functional must be callable, got {type(functional).__name__}")
        self.functional = functional
        self.reads = reads
        self.writes = writes
        self.keep = keep

    def select(self, rep: Representation) -> tuple[Tensor, ...]:
        return tuple(rep[name] for name in self.reads)

    def apply(self, selected: tuple[Tensor, ...], *, depth: int = 0, caller: Agent | None = None) -> Tensor:
        return self.functional(*selected)

    def update(self, rep: Representation, result: Tensor) -> Representation:
        if self.keep is not None:
            result = result[..., : self.keep]
        old = rep[self.writes]
        if result.shape != old.shape:
            raise ShapeError(
                f"operator {self.name!r}: the functional's output {tuple(result.shape)} does not fit field "
                f"{self.writes!r} of shape {tuple(old.shape)}"
                + ("" if self.keep is None else f" (after keeping {self.keep} entries of the last dimension)")
            )
        return rep.replace(**{self.writes: result})

    def extra_repr(self) -> str:
        keep = "" if self.keep is None else f", keep={self.keep}"
        return f"name={self.name!r}, reads={list(self.reads)}, writes={self.writes!r}{keep}"
