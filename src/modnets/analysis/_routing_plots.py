"""Training curves of the routing diagnostics H(A), H(A|X) and I(A;X), one line per method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ._figures import save_figure

__all__ = ["plot_routing_curves"]

ROUTING_KEYS = ("H(A)", "H(A|X)", "I(A;X)")


def plot_routing_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | Path,
    *,
    keys: Sequence[str] = ROUTING_KEYS,
    title: str = "",
) -> Path:
    """One panel per diagnostic against training step, one line per method; writes a PNG.

    Args:
        histories: method -> logged rows (each with ``"step"`` and the keys; rows or methods without a key
            are skipped, e.g. a dense baseline).
        path: output PNG.
        keys: the scalars to plot.
        title: figure title.

    Returns:
        the path written.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(keys), 3.4), dpi=110)
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for label, rows in histories.items():
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=label, lw=1.4)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{key} (nats)")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
