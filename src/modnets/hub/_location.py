"""Where the default hub lives."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "default_root"]

#: The environment variable that names the default hub folder.
ENV_VAR = "MODNETS_HUB"


def default_root() -> Path:
    """The default hub folder: ``$MODNETS_HUB`` when set, else ``$XDG_DATA_HOME/modnets/hub``, else
    ``~/.local/share/modnets/hub``. The command line's ``--hub DIR`` overrides all three.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME")
    base = Path(data_home) if data_home and Path(data_home).is_absolute() else Path.home() / ".local" / "share"
    return base / "modnets" / "hub"
