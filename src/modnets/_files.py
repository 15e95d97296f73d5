"""Durable, atomic file-system steps: the one place where modnets writes what must survive a crash.

Each step leaves either the old state or the new one under a final name, never a half-written file or
folder, and returns only once the change has reached the disk (``fsync`` of the data and of the folder
entry that names it):

- :func:`write_durably` writes a new file (into a staging folder, typically) and syncs it.
- :func:`replacing` and :func:`replace_durably` replace a file: the data goes to a temporary sibling, which
  is synced and renamed over the target.
- :func:`publish_dir` moves a complete staged folder to a name that does not exist yet.
- :func:`swap_dir` replaces an existing folder by one staged in :func:`staging_dir`. A folder cannot be
  renamed over a non-empty one, so the swap takes two renames (the old folder aside, the new one into
  place); :func:`current_dir` tells a reader where the folder is at every moment, also after a crash
  between the two, and :func:`recover_dir` finishes or undoes an interrupted swap and removes what it left.

Renames are atomic only within one file system, which is why every temporary name is a sibling of its
target. On platforms that cannot sync a folder, that step is skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "current_dir",
    "fsync_dir",
    "publish_dir",
    "recover_dir",
    "replace_durably",
    "replacing",
    "staging_dir",
    "swap_dir",
    "write_durably",
]


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (names created, renamed or removed in it) to the disk, where the OS allows it."""
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


def write_durably(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a new file and flush it to the disk before returning.

    Raises:
        FileExistsError: ``path`` exists already (a staged file is never overwritten).
    """
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def replacing(path: str | Path) -> Iterator[BinaryIO]:
    """Write a file that replaces ``path`` in one atomic rename once the block ends without an error.

    The block writes into a temporary file next to ``path``; on a clean exit it is synced, renamed over
    ``path`` and the folder synced. On an error the temporary file is removed and ``path`` is untouched.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "state.bin"
        >>> with replacing(target) as f:
        ...     _ = f.write(b"new")
        >>> target.read_bytes()
        b'new'
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def replace_durably(path: str | Path, data: bytes) -> None:
    """Replace the file ``path`` (or create it) by ``data`` atomically; see :func:`replacing`."""
    with replacing(path) as f:
        f.write(data)


def publish_dir(staging: str | Path, final: str | Path) -> None:
    """Move a complete folder, whose files are synced, to its final name in one atomic rename.

    ``final`` must not exist: on POSIX a rename onto an existing non-empty folder fails, so a published
    folder is never replaced (use :func:`swap_dir` for that).
    """
    fsync_dir(staging)
    os.rename(staging, final)
    fsync_dir(Path(final).parent)


def staging_dir(target: str | Path) -> Path:
    """A new empty folder next to ``target`` in which to build its next contents for :func:`swap_dir`.

    Its name marks it as ``target``'s, so that :func:`recover_dir` removes it if its writer dies.
    """
    target = Path(target)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))


def _aside(target: Path) -> Path:
    """Where :func:`swap_dir` keeps the old folder between its two renames."""
    return target.with_name(f".{target.name}.previous")


def _after_swap_step(step: str) -> None:
    """Called by :func:`swap_dir` after its steps ``"aside"`` and ``"placed"``; does nothing.

    Tests replace it to stop a process at that exact point, as a crash would.
    """


def _remove_dir(path: Path, target: Path) -> None:
    """Delete a folder of ``target``'s family; it is renamed first, so that a crash while deleting never
    leaves a partial folder under a name that :func:`current_dir` reads."""
    trash = target.with_name(f".{target.name}.removed-{uuid.uuid4().hex[:8]}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def current_dir(target: str | Path) -> Path:
    """Where a reader finds the contents of ``target``: ``target`` itself, or, after a crash between the two
    renames of :func:`swap_dir`, the old folder it had moved aside. Changes nothing on disk.

    Returns ``target`` when neither exists.
    """
    target = Path(target)
    if not target.exists():
        aside = _aside(target)
        if aside.is_dir():
            return aside
    return target


def _settle(target: Path) -> None:
    """Undo a swap of ``target`` stopped between its renames; finish one stopped after them."""
    aside = _aside(target)
    if aside.is_dir():
        if target.exists():
            _remove_dir(aside, target)
        else:
            os.rename(aside, target)
            fsync_dir(target.parent)


def recover_dir(target: str | Path) -> None:
    """Finish or undo a :func:`swap_dir` of ``target`` that a crash interrupted; a no-op otherwise.

    A swap stopped between its two renames is undone (the old folder goes back to ``target``); one stopped
    after placing the new folder is finished (the old one is deleted). Staging folders of ``target``
    (:func:`staging_dir`) and leftovers of interrupted deletions are removed: only writers call this, one
    at a time per ``target``. Readers use :func:`current_dir`, which changes nothing.
    """
    target = Path(target)
    _settle(target)
    for kind in ("staging", "removed"):
        for left in target.parent.glob(f".{glob.escape(target.name)}.{kind}-*"):
            shutil.rmtree(left, ignore_errors=True)


def swap_dir(staged: str | Path, target: str | Path) -> None:
    """Replace the folder ``target`` (which may not exist yet) by the complete folder ``staged``.

    ``staged`` must be a sibling of ``target`` (:func:`staging_dir`) whose files are synced
    (:func:`write_durably`). An earlier interrupted swap is settled first (see :func:`recover_dir`). Steps:
    the old ``target`` is renamed aside, ``staged`` is renamed to ``target``, the old folder is deleted;
    each rename is synced. A crash at any point leaves a folder that :func:`current_dir` finds, holding either
    the old contents or the new ones; the next swap (or :func:`recover_dir`) tidies up.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for text in ("old", "new"):
        ...     staged = staging_dir(root / "cache")
        ...     write_durably(staged / "data.txt", text.encode())
        ...     swap_dir(staged, root / "cache")
        >>> (root / "cache" / "data.txt").read_text(), sorted(p.name for p in root.iterdir())
        ('new', ['cache'])
    """
    staged, target = Path(staged), Path(target)
    _settle(target)
    fsync_dir(staged)
    aside = _aside(target)
    had_old = target.exists()
    if had_old:
        os.rename(target, aside)
        fsync_dir(target.parent)
        _after_swap_step("aside")
    try:
        os.rename(staged, target)
    except OSError:
        if had_old:  # e.g. ``staged`` on another file system: the old folder goes back
            os.rename(aside, target)
        raise
    fsync_dir(target.parent)
    _after_swap_step("placed")
    if had_old:
        _remove_dir(aside, target)
