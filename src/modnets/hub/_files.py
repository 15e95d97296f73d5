"""Durable, atomic file-system steps: write and sync a file, sync a folder, publish a folder by rename."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "publish_dir", "write_durably"]


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and flush it to the disk before returning."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (names created or renamed in it) to the disk, where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish_dir(staging: Path, final: Path) -> None:
    """Move a complete, synced folder to its final name in one atomic rename.

    ``final`` must not exist: on POSIX a rename onto an existing non-empty folder fails, so a published
    entry is never replaced.
    """
    fsync_dir(staging)
    os.rename(staging, final)
    fsync_dir(final.parent)
