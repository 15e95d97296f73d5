"""The top-K buffer over whole episodes: priority-queue training of an agent's controller.

The research note's top-K buffer keeps, per example, the K best routes found so far and trains the router
on them beside fresh samples. An agent trained by reward meets a fresh problem at every step, so there is no
per-example incumbent; priority-queue training (Abolafia et al. 2018, program synthesis) keeps instead the K
highest-return episodes found so far, across problems, and adds their log-likelihood under the current
policy to the REINFORCE loss: the controller learns to repeat the action sequences that solved problems,
as it would from expert traces, but from its own successes.

An episode is stored as its representations R(0) ... R(T) and the T actions taken; the buffer replays its
episodes as :class:`~modnets.agents.Trace` batches, for teacher forcing
(:meth:`~modnets.agents.ControlModule.sequence`). Only episodes with a positive return enter; ties in the
return go to the newer episode, so the buffer follows the curriculum to longer problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..agents import Representation, Trace
from ..errors import ConfigError, ShapeError

__all__ = ["EpisodeBuffer"]


@dataclass(frozen=True)
class _Episode:
    score: float
    order: int
    actions: Tensor  # (T,) long
    fields: dict[str, Tensor]  # name -> (T + 1, ...) R(0) ... R(T)


class EpisodeBuffer(nn.Module):
    """The ``capacity`` highest-return episodes offered so far (its state is saved with the module).

    Args:
        capacity: K, the number of episodes kept (>= 1).

    Raises:
        ConfigError: a capacity that is not an int >= 1.

    Example:
        >>> from modnets.agents import Representation, Trace
        >>> reps = Representation(x=torch.arange(6.0).reshape(2, 3, 1))  # 2 episodes, R(0) ... R(2)
        >>> trace = Trace(actions=torch.tensor([[0, 1], [1, -1]]), steps=torch.tensor([2, 1]),
        ...               stopped=torch.tensor([True, True]), final=reps.map(lambda v: v[:, -1]),
        ...               representations=reps)
        >>> buffer = EpisodeBuffer(capacity=4)
        >>> buffer.offer(trace, torch.tensor([1.0, 0.0]))  # the second earned nothing
        1
        >>> [replayed] = buffer.replay()  # one batch: every R(t) has one shape here
        >>> replayed.actions, replayed.representations["x"].squeeze(-1)
        (tensor([[0, 1]]), tensor([[0., 1., 2.]]))
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"EpisodeBuffer capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self._episodes: list[_Episode] = []  # best first
        self._offered = 0

    def __len__(self) -> int:
        return len(self._episodes)

    @property
    def scores(self) -> list[float]:
        """The returns of the kept episodes, best first."""
        return [e.score for e in self._episodes]

    def offer(self, trace: Trace, returns: Tensor) -> int:
        """Offer a batch of episodes; those with a positive return that rank among the K best are kept.

        Args:
            trace: the run, with its representations recorded (``record=True``): ``actions`` ``(batch, T)``,
                ``steps`` ``(batch,)``, fields ``(batch, T + 1, ...)``.
            returns: ``(batch,)`` each episode's return.

        Returns:
            how many of the offered episodes are in the buffer afterwards.

        Raises:
            ShapeError: a trace without representations, or returns of the wrong shape.
        """
        if trace.representations is None:
            raise ShapeError("EpisodeBuffer.offer needs a trace with its representations (run the agent with "
                             "record=True)")
        b = trace.actions.shape[0]
        if returns.shape != (b,):
            raise ShapeError(f"returns must be ({b},), one per episode, got {tuple(returns.shape)}")
        fresh = []
        for i in (returns > 0).nonzero().squeeze(1).tolist():
            t = int(trace.steps[i])
            fields = {k: v[i, : t + 1].detach().cpu().clone() for k, v in trace.representations.items()}
            fresh.append(_Episode(float(returns[i]), self._offered, trace.actions[i, :t].detach().cpu().clone(),
                                  fields))
            self._offered += 1
        self._episodes = sorted(self._episodes + fresh, key=lambda e: (e.score, e.order), reverse=True)
        self._episodes = self._episodes[: self.capacity]
        return sum(e.order >= self._offered - len(fresh) for e in self._episodes)

    def replay(self, device: torch.device | str = "cpu") -> list[Trace]:
        """The kept episodes as padded traces for teacher forcing, one per shape of R(t) (episodes of
        different problem sizes, e.g. tapes of different widths, cannot share one), best episode first.

        Returns:
            traces with ``actions`` ``(n, T_max)`` (``-1`` after an episode's end), ``steps``, ``stopped`` (all
            true), and ``representations`` ``(n, T_max + 1, ...)`` (an episode's last one repeated after its end).

        Raises:
            ConfigError: the buffer is empty.
        """
        if not self._episodes:
            raise ConfigError("EpisodeBuffer.replay: the buffer is empty")
        groups: dict[tuple, list[_Episode]] = {}
        for e in self._episodes:
            groups.setdefault(tuple((k, tuple(v.shape[1:])) for k, v in e.fields.items()), []).append(e)
        return [_batch(group, device) for group in groups.values()]

    def get_extra_state(self) -> dict[str, Any]:
        return {"offered": self._offered,
                "episodes": [{"score": e.score, "order": e.order, "actions": e.actions, "fields": e.fields}
                             for e in self._episodes]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._offered = int(state["offered"])
        self._episodes = [_Episode(float(e["score"]), int(e["order"]), e["actions"], dict(e["fields"]))
                          for e in state["episodes"]]

    def extra_repr(self) -> str:
        return f"capacity={self.capacity}, kept={len(self)}"


def _batch(episodes: list[_Episode], device: torch.device | str) -> Trace:
    """Episodes whose R(t) share their shapes as one trace, padded to the longest."""
    steps = torch.tensor([len(e.actions) for e in episodes])
    longest = int(steps.max())
    actions = torch.full((len(episodes), longest), -1, dtype=torch.long)
    for i, e in enumerate(episodes):
        actions[i, : len(e.actions)] = e.actions

    def padded(v: Tensor) -> Tensor:  # (T + 1, ...) -> (longest + 1, ...)
        return torch.cat([v, v[-1:].expand(longest + 1 - len(v), *v.shape[1:])])

    reps = Representation({k: torch.stack([padded(e.fields[k]) for e in episodes]) for k in episodes[0].fields})
    return Trace(actions=actions, steps=steps, stopped=torch.ones(len(episodes), dtype=torch.bool),
                 final=reps.map(lambda v: v[:, -1]), representations=reps).to(device)
