"""Writing a finished matplotlib figure to disk.

Library plots build a detached figure with matplotlib's object API, never its state machine::

    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ...
    save_figure(fig, path)

Such a figure belongs to no window manager, so the user's backend is never chosen or changed, nothing
needs closing (the figure is freed with its last reference), and the file is rendered by matplotlib's
Agg renderer whatever the backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["save_figure"]


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Lay out ``fig`` and write it to ``path`` (creating the folder); returns the path.

    The format follows the file's suffix (``.png``, ``.pdf``, ``.svg``, ...).

    Example:
        >>> import tempfile
        >>> from matplotlib.figure import Figure
        >>> fig = Figure(figsize=(3, 2))
        >>> _ = fig.subplots().plot([0, 1], [1, 0])
        >>> save_figure(fig, Path(tempfile.mkdtemp()) / "line.png").suffix
        '.png'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
