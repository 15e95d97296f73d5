"""Choosing candidate modules near the loss-variance Pareto front (thesis 4.3.1, Fig. 4.6).

Modules trained through an SGM are compared by their SGM's held-out loss and predictive variance: a low
loss can be luck when the variance is high. The candidates worth keeping are those on, or closest to, the
front of candidates that no other beats in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from ._figures import save_figure

__all__ = ["ParetoSelection", "pareto_front", "plot_pareto_selection", "select_near_pareto"]


def _pair(losses, variances) -> tuple[Tensor, Tensor]:
    loss = torch.as_tensor(losses, dtype=torch.float64).flatten()
    var = torch.as_tensor(variances, dtype=torch.float64).flatten()
    if loss.shape != var.shape or loss.numel() == 0:
        raise ShapeError(f"losses and variances must be two (n,) sequences with n > 0, got {tuple(loss.shape)} "
                         f"and {tuple(var.shape)}")
    if not bool(torch.isfinite(loss).all() and torch.isfinite(var).all()):
        raise ShapeError("losses and variances must be finite")
    return loss, var


def pareto_front(losses, variances) -> Tensor:
    """``(n,)`` bool: the candidates that no other candidate dominates (lower or equal in both, lower in one).

    Args:
        losses: ``(n,)`` losses (lower is better).
        variances: ``(n,)`` predictive variances (lower is better).

    Example:
        >>> pareto_front([1.0, 2.0, 3.0, 2.5], [3.0, 1.0, 0.5, 2.0]).tolist()
        [True, True, True, False]
    """
    loss, var = _pair(losses, variances)
    no_worse = (loss[None, :] <= loss[:, None]) & (var[None, :] <= var[:, None])  # [i, j]: j no worse than i
    better = (loss[None, :] < loss[:, None]) | (var[None, :] < var[:, None])
    return ~(no_worse & better).any(1)


@dataclass(frozen=True)
class ParetoSelection:
    """Candidates chosen near the Pareto front.

    Attributes:
        front: ``(n,)`` bool, the non-dominated candidates.
        distance: ``(n,)`` each candidate's distance to the nearest front candidate, with loss and variance
            each scaled to [0, 1] over all candidates (0 on the front).
        selected: indices of the chosen candidates, nearest to the front first.
    """

    front: Tensor
    distance: Tensor
    selected: tuple[int, ...]


def select_near_pareto(losses, variances, *, k: int | None = None, tolerance: float = 0.0) -> ParetoSelection:
    """Choose the candidates closest to the loss-variance Pareto front.

    Args:
        losses: ``(n,)`` SGM losses on held-out data.
        variances: ``(n,)`` predictive variances there.
        k: choose the ``k`` nearest candidates (front first); ``None``: every candidate within ``tolerance``.
        tolerance: with ``k=None``, the largest scaled distance to the front that is chosen (0: the front).

    Returns:
        the front, every candidate's distance to it, and the chosen indices.

    Raises:
        ConfigError: ``k`` not in 1..n, or a negative tolerance.

    Example:
        >>> s = select_near_pareto([1.0, 2.0, 3.0, 2.5, 3.0], [3.0, 1.0, 0.5, 2.0, 3.0], k=4)
        >>> s.selected
        (0, 1, 2, 3)
    """
    loss, var = _pair(losses, variances)
    n = loss.shape[0]
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n):
        raise ConfigError(f"k must be an int in 1..{n} (the number of candidates) or None, got {k!r}")
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be >= 0, got {tolerance!r}")
    front = pareto_front(loss, var)

    def scaled(x: Tensor) -> Tensor:
        span = x.max() - x.min()
        return (x - x.min()) / span if span > 0 else torch.zeros_like(x)

    points = torch.stack([scaled(loss), scaled(var)], dim=1)  # (n, 2)
    distance = torch.cdist(points, points[front]).min(1).values  # (n,)
    order = sorted(range(n), key=lambda i: (float(distance[i]), float(loss[i]), i))
    chosen = order[:k] if k is not None else [i for i in order if float(distance[i]) <= tolerance]
    return ParetoSelection(front=front, distance=distance, selected=tuple(chosen))


def plot_pareto_selection(losses, variances, selection: ParetoSelection, path: str | Path, *,
                          title: str = "SGM loss vs predictive variance") -> Path:
    """Scatter the candidates (thesis Fig. 4.6): chosen ones highlighted, the front joined by a line.

    Args:
        losses: ``(n,)`` SGM losses.
        variances: ``(n,)`` predictive variances.
        selection: what :func:`select_near_pareto` returned for them.
        path: the PNG file to write.
        title: the plot's title.

    Returns:
        the written path.
    """
    from matplotlib.figure import Figure

    loss, var = _pair(losses, variances)
    chosen = torch.zeros_like(selection.front)
    chosen[list(selection.selected)] = True
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    ax.scatter(loss[~chosen], var[~chosen], c="0.6", label="candidates")
    ax.scatter(loss[chosen], var[chosen], c="tab:blue", label="selected")
    order = torch.argsort(loss[selection.front])
    ax.plot(loss[selection.front][order], var[selection.front][order], c="tab:blue", lw=0.8, ls="--",
            label="Pareto front")
    ax.set_xlabel("SGM validation loss")
    ax.set_ylabel("predictive variance")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)
