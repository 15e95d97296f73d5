"""Checkpoints written atomically, and the random-generator state needed to resume a run exactly.

A checkpoint is one file ``step-00000120.pt`` holding a dictionary of tensors and plain Python values
(loaded back with ``torch.load(weights_only=True)``: no arbitrary objects are unpickled). It is written to a
temporary file in the same folder, flushed to disk, and renamed over its final name (``modnets._files``), so
a crash leaves the previous checkpoints intact and never a half-written one under a checkpoint name. On resume
the newest checkpoint that loads is used; a corrupt newer one is skipped with a warning.
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import replacing
from ..errors import ConfigError

__all__ = ["CheckpointWarning", "Checkpointer", "get_rng_state", "set_rng_state"]

_NAME = re.compile(r"^step-(\d{8,})\.pt$")


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read and an older one is used instead."""


def get_rng_state() -> dict[str, Any]:
    """The states of torch's, Python's and NumPy's global random generators, as checkpointable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))


class Checkpointer:
    """Atomic checkpoints of a run in one folder, the newest ``keep`` kept.

    Args:
        directory: the run's checkpoint folder (created).
        keep: how many checkpoints to keep (>= 1; older ones are deleted after a successful save).

    Example:
        >>> import tempfile
        >>> ckpt = Checkpointer(tempfile.mkdtemp(), keep=2)
        >>> for step in (10, 20, 30):
        ...     _ = ckpt.save({"step": step, "w": torch.ones(2) * step}, step)
        >>> [p.name for p in ckpt.paths()], ckpt.load_latest()["step"]
        (['step-00000030.pt', 'step-00000020.pt'], 30)
    """

    def __init__(self, directory: str | Path, *, keep: int = 2):
        if not isinstance(keep, int) or keep < 1:
            raise ConfigError(f"keep must be an int >= 1, got {keep!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def paths(self) -> list[Path]:
        """The checkpoint files, newest first."""
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found, reverse=True)]

    def clear(self) -> None:
        """Delete every checkpoint in the folder (a fresh run starting over), and the temporary files of
        writes that a killed process never finished."""
        for path in self.paths():
            path.unlink(missing_ok=True)
        for path in self.directory.glob(".step-*.tmp"):
            path.unlink(missing_ok=True)

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write ``state`` as the checkpoint of ``step`` (atomically), then prune old ones."""
        path = self.directory / f"step-{step:08d}.pt"
        with replacing(path) as f:
            torch.save(state, f)
        for old in self.paths()[self.keep :]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads, or ``None`` when there is none; unreadable newer ones are skipped
        with a :class:`CheckpointWarning`."""
        for path in self.paths():
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # a truncated or corrupted file: fall back to the previous one
                warnings.warn(f"checkpoint {path} could not be read ({type(e).__name__}: {e}); using an older one",
                              CheckpointWarning, stacklevel=2)
        return None
