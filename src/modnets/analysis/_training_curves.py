"""Training curves: logged measures of several runs against time or steps, in one PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ConfigError
from ._figures import save_figure

__all__ = ["plot_training_curves"]


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]] | Sequence[Sequence[Mapping[str, float]]]],
    path: str | Path,
    *,
    x: str = "seconds",
    y: str = "error",
    logx: bool = False,
    logy: bool = False,
    title: str = "",
    ylabel: str | None = None,
    smooth: int = 1,
) -> Path:
    """Plot one logged measure of several runs, one line per run; writes a PNG.

    A label may hold several runs (e.g. one per seed): they are drawn in one colour, thinner, labelled once.

    Args:
        histories: run label -> logged rows (dicts with at least ``x`` and ``y``), e.g. ``TrainResult.history``;
            or label -> a sequence of such histories, one per seed.
        path: output PNG.
        x: the key on the x axis (``"seconds"``, ``"step"``).
        y: the key on the y axis (``"error"``, ``"loss"``, ``"grad_abs"``, ...).
        logx: logarithmic x axis.
        logy: logarithmic y axis.
        title: plot title.
        ylabel: y axis label (default: ``y``).
        smooth: moving-average window over logged rows (1: none).

    Raises:
        ConfigError: ``smooth`` < 1.
    """
    if not isinstance(smooth, int) or smooth < 1:
        raise ConfigError(f"smooth must be a positive int, got {smooth!r}")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4), dpi=110)
    ax = fig.subplots()
    colors = iter(f"C{i % 10}" for i in range(len(histories)))
    for label, runs in histories.items():
        color = next(colors)
        several = bool(runs) and not isinstance(runs[0], Mapping)
        runs = list(runs) if several else [runs]
        n = sum(1 for run in runs if any(x in r and y in r for r in run))
        drawn = False
        for run in runs:
            rows = [r for r in run if x in r and y in r]
            if not rows:
                continue
            xs = [float(r[x]) for r in rows]
            ys = [float(r[y]) for r in rows]
            if smooth > 1:
                ys = [sum(ys[max(0, i - smooth + 1) : i + 1]) / len(ys[max(0, i - smooth + 1) : i + 1])
                      for i in range(len(ys))]
            name = None if drawn else (f"{label} ({n} seeds)" if several and n > 1 else label)
            ax.plot(xs, ys, label=name, color=color, linewidth=0.8 if several and n > 1 else 1.2,
                    alpha=0.7 if several and n > 1 else 1.0)
            drawn = True
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel({"seconds": "training time (s)", "step": "training steps"}.get(x, x))
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
