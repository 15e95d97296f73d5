"""Training curves: logged measures of several runs against time or steps, in one PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ConfigError
from ._figures import save_figure

__all__ = ["plot_training_curves"]


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
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

    Args:
        histories: run label -> logged rows (dicts with at least ``x`` and ``y``), e.g. ``TrainResult.history``.
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
    for label, rows in histories.items():
        rows = [r for r in rows if x in r and y in r]
        if not rows:
            continue
        xs = [float(r[x]) for r in rows]
        ys = [float(r[y]) for r in rows]
        if smooth > 1:
            ys = [sum(ys[max(0, i - smooth + 1) : i + 1]) / len(ys[max(0, i - smooth + 1) : i + 1])
                  for i in range(len(ys))]
        ax.plot(xs, ys, label=label, linewidth=1.2)
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
