"""Expert capacity: at most C rows per expert and call, and which rows get a place.

An expert of a mixture-of-experts layer with a capacity takes at most ``C = ceil(c * N * k / E)`` rows
per call (:func:`expert_capacity`; N rows, k picks per row, E experts, capacity factor c; GShard, Lepikhin
et al. 2021; Switch Transformer, Fedus et al. 2021), so its work is bounded whatever the router does.

Token choice with a capacity (:func:`assign_capacity`). Each row picks its k experts; an expert with more
than C picks keeps C of them. The picks are placed in one fixed order, so a call is reproducible:

1. by pick rank: every row's first choice before any row's second choice (as GShard places them);
2. within a rank, by the pick's priority (the router's probability of the pick), highest first (the
   batch-prioritised routing of Riquelme et al. 2021);
3. then by row index, lowest first.

A pick that finds its expert full overflows. It is dropped (it adds nothing to its row's output), or,
when the rows' rankings of the experts are given, rerouted: once every expert holds its kept picks, the
overflowing picks, in the same order, go one after another to the best-ranked expert of their row that
is not already among the row's picks and still has room; a pick that finds none is dropped.

Expert choice (:func:`expert_choice`, Zhou et al. 2022). Each expert takes the C rows with the highest
scores for it, ties by row index; a row may be taken by any number of experts from 0 to E, and every
expert runs on exactly C rows.

The placement is integer bookkeeping without gradients; rerouting runs a host loop over the overflowing
picks only (each scanning at most E experts).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["ExpertChoice", "Overflow", "assign_capacity", "expert_capacity", "expert_choice"]


def expert_capacity(n_rows: int, k: int, n_experts: int, factor: float) -> int:
    """The capacity ``C = ceil(factor * n_rows * k / n_experts)``, at least 1.

    Args:
        n_rows: N, rows in the call.
        k: picks per row (the average number of experts per row, for expert choice).
        n_experts: E.
        factor: the capacity factor c > 0; 1 gives each expert exactly its share of a uniform routing.

    Returns:
        C.
    """
    # rounded first so that e.g. 1.1 * 10 (= 11.000000000000002 in floating point) gives 11, not 12
    return max(1, math.ceil(round(factor * n_rows * k / n_experts, 9)))


class Overflow(NamedTuple):
    """What a capacity did to one call's picks (:func:`assign_capacity`).

    Pick ``(b, j)`` is row b's j-th choice; lists of picks are in row-major order (by row, then pick).

    Attributes:
        capacity: C, the most picks an expert took.
        choice: (N, k) long, the expert that ran each pick: the router's choice with rerouted picks
            replaced by their new expert (dropped picks keep the expert they overflowed from).
        kept: (N, k) bool, whether the pick ran (False for dropped picks).
        load: (E,) long, picks each expert ran (at most C).
        dropped: (E,) long, dropped picks per expert they were routed to.
        rerouted: (E,) long, picks rerouted away from each expert.
        dropped_rows: (n_d,) long, the row of each dropped pick.
        dropped_picks: (n_d,) long, its pick index j.
        rerouted_rows: (n_r,) long, the row of each rerouted pick.
        rerouted_picks: (n_r,) long, its pick index j.
        rerouted_from: (n_r,) long, the expert the router chose for it.
        rerouted_to: (n_r,) long, the expert that ran it.
    """

    capacity: int
    choice: Tensor
    kept: Tensor
    load: Tensor
    dropped: Tensor
    rerouted: Tensor
    dropped_rows: Tensor
    dropped_picks: Tensor
    rerouted_rows: Tensor
    rerouted_picks: Tensor
    rerouted_from: Tensor
    rerouted_to: Tensor


def assign_capacity(
    choice: Tensor,
    priority: Tensor,
    capacity: int,
    n_experts: int,
    *,
    ranking: Tensor | None = None,
) -> Overflow:
    """Place the picks under a capacity, in the order of the module docstring; drop or reroute the rest.

    Args:
        choice: (N, k) long expert ids in [0, E), distinct within a row.
        priority: (N, k) the priority of each pick (e.g. the router's probability of it); read without
            gradient.
        capacity: C >= 1.
        n_experts: E.
        ranking: (N, E) long, each row's experts from best to worst, to reroute overflowing picks; ``None``
            drops them.

    Returns:
        The :class:`Overflow`, its tensors on the device of ``choice``.

    Raises:
        ShapeError: priority or ranking of the wrong shape.
        ConfigError: a capacity below 1.

    Example:
        >>> over = assign_capacity(torch.tensor([[0], [0], [0], [1]]), torch.ones(4, 1), 2, 2)
        >>> over.dropped.tolist(), over.dropped_rows.tolist(), over.load.tolist()
        ([1, 0], [2], [2, 1])
    """
    n, k = choice.shape
    if priority.shape != choice.shape:
        raise ShapeError(f"priority must have the shape of choice {tuple(choice.shape)}, got {tuple(priority.shape)}")
    if ranking is not None and ranking.shape != (n, n_experts):
        raise ShapeError(f"ranking must have shape (N={n}, E={n_experts}), got {tuple(ranking.shape)}")
    if not isinstance(capacity, int) or capacity < 1:
        raise ConfigError(f"capacity must be an int >= 1, got capacity={capacity!r}")
    flat = choice.reshape(-1)
    # processing order: stable sorts, last key first (the flat index b * k + j breaks ties by row)
    order = torch.sort(-priority.detach().reshape(-1), stable=True).indices
    order = order[torch.sort(order % k, stable=True).indices]
    # a pick's place in its expert's queue
    counts = torch.bincount(flat, minlength=n_experts)
    starts = torch.cumsum(counts, 0) - counts
    queued = flat[order]
    by_expert = torch.sort(queued, stable=True)
    place = torch.empty_like(flat)
    place[order[by_expert.indices]] = torch.arange(flat.numel(), device=flat.device) - starts[by_expert.values]
    kept = place < capacity
    final = flat.clone()
    moved = torch.zeros_like(kept)
    if ranking is not None and not bool(kept.all()):
        final, kept, moved = _reroute(flat, kept, order, counts, capacity, ranking, k)
    load = torch.bincount(final[kept], minlength=n_experts)
    dropped, rerouted = ~kept, moved
    d_idx, r_idx = dropped.nonzero().squeeze(1), rerouted.nonzero().squeeze(1)
    return Overflow(
        capacity=capacity,
        choice=final.view(n, k),
        kept=kept.view(n, k),
        load=load,
        dropped=torch.bincount(flat[dropped], minlength=n_experts),
        rerouted=torch.bincount(flat[rerouted], minlength=n_experts),
        dropped_rows=torch.div(d_idx, k, rounding_mode="floor"),
        dropped_picks=d_idx % k,
        rerouted_rows=torch.div(r_idx, k, rounding_mode="floor"),
        rerouted_picks=r_idx % k,
        rerouted_from=flat[r_idx],
        rerouted_to=final[r_idx],
    )


def _reroute(
    flat: Tensor, kept: Tensor, order: Tensor, counts: Tensor, capacity: int, ranking: Tensor, k: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The overflowing picks, in processing order, each to its row's best expert with room not yet in
    the row; returns the final (N * k,) choice, kept and rerouted masks."""
    final = flat.cpu().numpy().copy()
    kept_np = kept.cpu().numpy().copy()
    moved = np.zeros_like(kept_np)
    load = np.minimum(counts.cpu().numpy(), capacity)
    ranks = ranking.detach().cpu().numpy()
    order_np = order.cpu().numpy()
    for i in order_np[~kept_np[order_np]].tolist():
        b = i // k
        row = final[b * k : (b + 1) * k]
        for e in ranks[b].tolist():
            if load[e] < capacity and e not in row:
                final[i], kept_np[i], moved[i] = e, True, True
                load[e] += 1
                break
    device = flat.device
    return (
        torch.from_numpy(final).to(device),
        torch.from_numpy(kept_np).to(device),
        torch.from_numpy(moved).to(device),
    )


class ExpertChoice(NamedTuple):
    """The rows each expert chose (:func:`expert_choice`).

    Attributes:
        rows: (E, C) long, the rows expert e took, best first.
        weights: (E, C) their scores, differentiable in the scores.
    """

    rows: Tensor
    weights: Tensor


def expert_choice(scores: Tensor, capacity: int) -> ExpertChoice:
    """Each expert takes the ``capacity`` rows with the highest scores for it, ties by row index.

    Args:
        scores: (N, E) the score of each expert for each row (e.g. the router's probabilities).
        capacity: C, 1 <= C <= N.

    Returns:
        :class:`ExpertChoice`: rows (E, C), weights (E, C) = ``scores[rows[e, c], e]``.

    Raises:
        ConfigError: C outside [1, N].

    Example:
        >>> expert_choice(torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]), 2).rows.tolist()
        [[0, 1], [2, 1]]
    """
    n = scores.shape[0]
    if not isinstance(capacity, int) or not 1 <= capacity <= n:
        raise ConfigError(f"capacity must be an int in [1, N={n}], got capacity={capacity!r}")
    top = torch.sort(scores.detach(), dim=0, descending=True, stable=True).indices[:capacity]  # (C, E)
    return ExpertChoice(top.T.contiguous(), scores.gather(0, top).T)
