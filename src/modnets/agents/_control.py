"""The control module: a digestor (R(t) -> fixed-size embedding) and a policy (which operator next)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._representation import Representation

__all__ = ["ControlModule", "Decision", "Policy"]


class Decision(NamedTuple):
    """One step of a policy.

    Attributes:
        logits: ``(batch, n_actions)`` unnormalised scores of the actions (the last is the stop action).
        state: the policy's recurrent state after this step (``None`` for memory-less policies).
    """

    logits: Tensor
    state: Any

    @property
    def probs(self) -> Tensor:
        """``(batch, n_actions)`` the selection distribution s(t)."""
        return torch.softmax(self.logits, dim=-1)


class Policy(nn.Module, ABC):
    """Decides which action to take next from the digestor's embedding and the previous action.

    The recurrent state is ``None``, a tensor or a tuple of tensors, each with the batch as its first
    dimension, so that an agent can run the policy on the examples that are still running only.

    Args:
        n_actions: number of actions, the stop action (last) included.
    """

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        if not isinstance(n_actions, int) or n_actions < 2:
            raise ConfigError(f"a policy needs n_actions >= 2 (operators and a stop action), got {n_actions!r}")
        self.n_actions = n_actions

    @abstractmethod
    def initial_state(self, batch_size: int, device: torch.device | None = None) -> Any:
        """The recurrent state before the first step: ``None``, a ``(batch, ...)`` tensor or a tuple of them."""

    @abstractmethod
    def forward(self, embedding: Tensor, previous: Tensor, state: Any) -> Decision:
        """One step.

        Args:
            embedding: ``(batch, d_embed)`` the digestor's embedding e(t).
            previous: ``(batch,)`` long previous action, ``-1`` at the first step.
            state: the recurrent state.
        """

    def sequence(self, embeddings: Tensor, previous: Tensor) -> Tensor:
        """Teacher-forced logits of a whole sequence (unrolls :meth:`forward`; override for speed).

        Args:
            embeddings: ``(batch, steps, d_embed)``.
            previous: ``(batch, steps)`` long previous actions (``-1`` at the first step).

        Returns:
            ``(batch, steps, n_actions)`` logits.
        """
        state = self.initial_state(embeddings.shape[0], embeddings.device)
        out = []
        for t in range(embeddings.shape[1]):
            decision = self(embeddings[:, t], previous[:, t], state)
            out.append(decision.logits)
            state = decision.state
        return torch.stack(out, dim=1)

    def one_hot_previous(self, previous: Tensor) -> Tensor:
        """``(..., n_actions)`` one-hot of the previous actions; all zeros for ``-1`` (no previous action)."""
        return nn.functional.one_hot(previous.clamp_min(0), self.n_actions).float() * (previous >= 0)[..., None]


class ControlModule(nn.Module):
    """Digestor + policy (thesis 3.1, Fig. 3.5): selects the next operator from R(t) and its own state.

    Args:
        digestor: maps a representation with ``batch`` examples to a ``(batch, d_embed)`` embedding.
        policy: the decision maker over ``n_actions`` actions (operators, then the stop action).
    """

    def __init__(self, *, digestor: nn.Module, policy: Policy) -> None:
        super().__init__()
        if not isinstance(policy, Policy):
            raise ConfigError(f"policy must be a Policy, got {type(policy).__name__}")
        if not callable(digestor):
            raise ConfigError(f"digestor must be callable, got {type(digestor).__name__}")
        self.digestor = digestor
        self.policy = policy

    @property
    def n_actions(self) -> int:
        return self.policy.n_actions

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> Any:
        """The policy's state before the first step."""
        return self.policy.initial_state(batch_size, device)

    def embed(self, rep: Representation) -> Tensor:
        """``(batch, d_embed)`` e(t) of R(t)."""
        e = self.digestor(rep)
        if e.dim() != 2 or e.shape[0] != rep.batch_size:
            raise ShapeError(f"the digestor must return (batch, d_embed) = ({rep.batch_size}, d), got {tuple(e.shape)}")
        return e

    def forward(self, rep: Representation, previous: Tensor, state: Any) -> Decision:
        """One decision: digest R(t), then ask the policy.

        Args:
            rep: R(t), fields ``(batch, ...)``.
            previous: ``(batch,)`` long previous action (``-1`` at the first step).
            state: the policy's state.
        """
        return self.policy(self.embed(rep), previous, state)

    def sequence(self, reps: Representation, previous: Tensor, mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits over whole traces.

        Args:
            reps: fields ``(batch, steps, ...)``: R(t) at each step.
            previous: ``(batch, steps)`` long previous actions (``-1`` at the first step).
            mask: ``(batch, steps)`` bool, the steps to digest (e.g. before each example's stop); the
                others get a zero embedding. ``None``: all.

        Returns:
            ``(batch, steps, n_actions)`` logits.
        """
        b, t = previous.shape
        if mask is None:
            e = self.embed(reps.map(lambda x: x.flatten(0, 1))).reshape(b, t, -1)  # (B, T, E)
        else:
            if mask.shape != (b, t):
                raise ShapeError(f"mask must be (batch, steps) = ({b}, {t}), got {tuple(mask.shape)}")
            rows = self.embed(reps.map(lambda x: x[mask]))  # (n, E) for the masked steps only
            e = rows.new_zeros(b, t, rows.shape[-1]).index_put((*mask.nonzero(as_tuple=True),), rows)
        return self.policy.sequence(e, previous)


def state_rows(state: Any, index: Tensor) -> Any:
    """The rows ``index`` of a policy state (``None``, a batch-first tensor, or a tuple of them)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.index_select(0, index)
    if isinstance(state, tuple):
        return tuple(state_rows(s, index) for s in state)
    raise ConfigError(f"a policy state must be None, a tensor or a tuple of tensors, got {type(state).__name__}")


def put_state_rows(state: Any, index: Tensor, rows: Any) -> Any:
    """``state`` with its rows ``index`` replaced by ``rows`` (same structure)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.index_copy(0, index, rows)
    if isinstance(state, tuple):
        return tuple(put_state_rows(s, index, r) for s, r in zip(state, rows, strict=True))
    raise ConfigError(f"a policy state must be None, a tensor or a tuple of tensors, got {type(state).__name__}")
