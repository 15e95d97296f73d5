"""The agent: runs the perception-action loop of a control module over a set of operators."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._control import ControlModule, put_state_rows, state_rows
from ._interface import Interface
from ._operator import Operator
from ._representation import Representation
from ._trace import Trace

__all__ = ["Agent"]

StepBound = int | Callable[[Representation], int]


class Agent(nn.Module):
    """The perception-action loop (thesis 3.1, Fig. 3.1).

    At each step the control module digests R(t) and selects an action; the selected operator turns R(t)
    into R(t+1) (examples of a batch may select different operators: each operator runs once on the rows
    that selected it). An example stops when it selects the stop action, which leaves R(t) unchanged; the
    whole loop stops when every example has stopped or after ``max_steps`` steps. The control module runs
    on the examples still running only (its policy's state is batch-first, see
    :class:`~modnets.agents.Policy`).

    Actions are the operators, in order, then the stop action. An agent is itself usable as an operator
    of a higher-level agent through :class:`~modnets.agents.AgentOperator`.

    Args:
        control: the control module; its policy must have ``len(operators) + 1`` actions.
        operators: the operators, with distinct names.
        stop: name of the stop action (e.g. ``"eop"``).
        max_steps: the step bound: an int, or a function of R(0) (e.g. of the list length).

    Raises:
        ConfigError: wrong action count, duplicate names, a stop name that is also an operator name.
    """

    def __init__(
        self,
        *,
        control: ControlModule,
        operators: Sequence[Operator],
        stop: str = "stop",
        max_steps: StepBound = 100,
    ) -> None:
        super().__init__()
        operators = list(operators)
        if not isinstance(control, ControlModule):
            raise ConfigError(f"control must be a ControlModule, got {type(control).__name__}")
        if not operators or not all(isinstance(op, Operator) for op in operators):
            raise ConfigError("operators must be a non-empty sequence of Operator")
        names = [op.name for op in operators]
        if len(set(names)) != len(names) or stop in names:
            raise ConfigError(f"operator names must be distinct and differ from the stop action {stop!r}, got {names}")
        if control.n_actions != len(operators) + 1:
            raise ConfigError(
                f"the policy has {control.n_actions} actions, but {len(operators)} operators + the stop action "
                f"{stop!r} need {len(operators) + 1}"
            )
        if not callable(max_steps) and (not isinstance(max_steps, int) or max_steps < 1):
            raise ConfigError(f"max_steps must be a positive int or a function of R(0), got {max_steps!r}")
        self.control = control
        self.operators = nn.ModuleList(operators)
        self.stop = stop
        self.max_steps = max_steps

    @property
    def action_names(self) -> tuple[str, ...]:
        """The operators' names, then the stop action's."""
        return (*(op.name for op in self.operators), self.stop)

    @property
    def stop_action(self) -> int:
        """Index of the stop action (the last one)."""
        return len(self.operators)

    def step_bound(self, rep: Representation) -> int:
        """The step bound for a batch starting at ``rep``."""
        bound = self.max_steps(rep) if callable(self.max_steps) else self.max_steps
        if not isinstance(bound, int) or bound < 1:
            raise ConfigError(f"the step bound must be a positive int, got {bound!r}")
        return bound

    def forward(
        self,
        rep: Representation,
        *,
        max_steps: int | None = None,
        teacher: Tensor | None = None,
        select: Callable[[Tensor], Tensor] | None = None,
        interface: Interface | None = None,
        reread: bool = False,
        record: bool = False,
        depth: int = 0,
    ) -> Trace:
        """Run the loop from R(0) = ``rep``.

        Args:
            rep: R(0), fields ``(batch, ...)``.
            max_steps: the step bound (default: the agent's ``max_steps``).
            teacher: ``(batch, steps)`` long target actions that override the selection (operator override
                during supervised training); ``-1`` ends an example like the stop action. The control
                module still scores every step, for the selection loss.
            select: the selection rule, ``(batch, n_actions)`` scores -> ``(batch,)`` long actions (default:
                the argmax, greedy); e.g. sampling from the softmax for training by reward. Ignored with
                ``teacher``.
            interface: when given, every step's R(t) is written to its environment.
            reread: read R(t) back from the environment after every write (needs ``interface``), so the
                loop continues from the environment's decoded state instead of the soft representation.
            record: keep every R(t) in the trace.
            depth: how many agents deep this run is (0 for a top-level agent).

        Returns:
            the trace: actions, logits, steps, whether each example stopped, the final R.
        """
        if reread and interface is None:
            raise ConfigError("reread=True needs an interface to read from")
        bound = self.step_bound(rep) if max_steps is None else max_steps
        if teacher is not None:
            if teacher.dim() != 2 or teacher.shape[0] != rep.batch_size:
                raise ShapeError(f"teacher must be (batch, steps) = ({rep.batch_size}, T), got {tuple(teacher.shape)}")
            bound = min(bound, teacher.shape[1])
        b = rep.batch_size
        device = next(iter(rep.values())).device
        stop = self.stop_action
        state = self.control.initial_state(b, device)
        previous = torch.full((b,), -1, dtype=torch.long, device=device)
        active = torch.ones(b, dtype=torch.bool, device=device)
        stopped = torch.zeros(b, dtype=torch.bool, device=device)
        actions, logits, reps = [], [], [rep]
        for t in range(bound):
            if not bool(active.any()):
                break
            scores, state = self._decide(rep, previous, state, active)
            if teacher is None:
                chosen = scores.argmax(-1) if select is None else select(scores)
                if chosen.shape != (b,):
                    raise ShapeError(f"select must return (batch,) = ({b},) actions, got {tuple(chosen.shape)}")
            else:
                chosen = torch.where(teacher[:, t] >= 0, teacher[:, t], stop)
            taken = torch.where(active, chosen, -1)
            rep = self._run_operators(rep, taken, depth)
            stopped = stopped | (taken == stop)
            active = active & (taken != stop)
            previous = taken
            actions.append(taken)
            logits.append(scores)
            if interface is not None:
                interface.write(rep)
                if reread:
                    rep = interface.read()
            if record:
                reps.append(rep)
        if actions:
            taken_all = torch.stack(actions, dim=1)
            logits_all = torch.stack(logits, dim=1)
        else:
            taken_all = torch.empty(b, 0, dtype=torch.long, device=device)
            logits_all = torch.empty(b, 0, self.control.n_actions, device=device)
        return Trace(
            actions=taken_all,
            steps=(taken_all >= 0).sum(1),
            stopped=stopped,
            final=rep,
            logits=logits_all,
            representations=Representation.stack(reps, dim=1) if record else None,
        )

    def solve(self, interface: Interface, **kwargs) -> Trace:
        """Run the loop on an environment through its interface: read R(0), write every R(t) back.

        Args:
            interface: bound to the environment to act on.
            kwargs: as for :meth:`forward` (``max_steps``, ``reread``, ``record``, ...).
        """
        return self(interface.read(), interface=interface, **kwargs)

    def _decide(self, rep: Representation, previous: Tensor, state: Any, active: Tensor) -> tuple[Tensor, Any]:
        """The control module's scores ``(batch, n_actions)`` (zero for stopped examples) and the new state;
        the control module runs on the examples still running only."""
        if bool(active.all()):
            decision = self.control(rep, previous, state)
            return decision.logits, decision.state
        rows = active.nonzero().squeeze(1)
        decision = self.control(rep.rows(rows), previous.index_select(0, rows), state_rows(state, rows))
        scores = decision.logits.new_zeros(rep.batch_size, decision.logits.shape[-1]).index_copy(0, rows,
                                                                                               decision.logits)
        return scores, put_state_rows(state, rows, decision.state)

    def _run_operators(self, rep: Representation, taken: Tensor, depth: int) -> Representation:
        """Apply each example's operator: each operator runs once on the rows that selected it."""
        out = rep
        for k, op in enumerate(self.operators):
            rows = (taken == k).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            if rows.numel() == rep.batch_size:
                return op(rep, depth=depth + 1, caller=self)
            out = out.put_rows(rows, op(rep.rows(rows), depth=depth + 1, caller=self))
        return out

    def extra_repr(self) -> str:
        return f"actions={list(self.action_names)}"
