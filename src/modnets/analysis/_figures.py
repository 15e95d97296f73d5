"""Writing a finished matplotlib figure to disk."""

from __future__ import annotations

from pathlib import Path

__all__ = ["save_figure"]


def save_figure(fig, path: str | Path, *, dpi: int = 120) -> Path:
    """Lay out ``fig``, write it to ``path`` (creating the folder), close it; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
