"""Hyper-parameter searches drawn: each trial's validation value against the parameter searched (thesis
Figs 4.8 and 4.11: one configuration per point, per module and end to end)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._figures import save_figure

__all__ = ["plot_search_trials"]


def plot_search_trials(
    studies: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | Path,
    *,
    param: str = "lr",
    ylabel: str = "validation loss",
    logx: bool = True,
    title: str = "",
) -> Path:
    """One panel per study: every finished trial's value against one of its parameters, the best one ringed.

    Args:
        studies: study name (a module, ``"end to end"``) -> its trials, each a mapping with ``params`` (a
            mapping that holds ``param``) and ``value`` (``None`` or NaN for a failed trial, left out), as in
            :attr:`~modnets.train.SearchResult.trials`.
        path: output PNG.
        param: the parameter on the x axis.
        ylabel: what the values are.
        logx: logarithmic x axis (learning rates).
        title: the figure's title.

    Raises:
        ConfigError: no study.
    """
    if not studies:
        raise ConfigError("plot_search_trials needs at least one study")
    from matplotlib.figure import Figure

    n = len(studies)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.6 * cols, 2.9 * rows), dpi=110)
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax, (name, trials) in zip(axes, studies.items(), strict=False):
        points = [(float(t["params"][param]), float(t["value"])) for t in trials
                  if param in t.get("params", {}) and t.get("value") is not None and math.isfinite(t["value"])]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, s=16, color="C0")
            best = min(points, key=lambda p: p[1])
            ax.scatter([best[0]], [best[1]], s=70, facecolors="none", edgecolors="C3", linewidths=1.5)
        if logx:
            ax.set_xscale("log")
        ax.set_title(f"{name} ({len(points)} trials)", fontsize=9)
        ax.set_xlabel(param, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
