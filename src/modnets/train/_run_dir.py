"""``RunDir``: where a training run writes its logs and checkpoints, whether it resumes, whether it shows progress.

Every training function takes one ``run: RunDir`` and a ``name`` instead of a logger, a checkpoint folder, a
resume flag, a progress flag and a label. One folder holds everything a run writes, by name::

    PATH/tensorboard/NAME/    scalars.jsonl and TensorBoard events (RunLogger)
    PATH/checkpoints/NAME/    step-*.pt checkpoints
    PATH/NAME/                anything else a training keeps (caches, search databases)

``run.sub("modular")`` is the same folder with names prefixed by ``modular/``, so nested trainings (the
modules of a module-wise run) sit next to each other, never in a ``checkpoints/.../checkpoints`` nest.
``RunDir()`` writes nothing: no logs, no checkpoints (and it cannot resume).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ._logging import RunLogger

__all__ = ["RunDir"]


class RunDir:
    """A run folder (see the module docstring).

    Args:
        path: the folder (created on first write); ``None``: write nothing.
        resume: continue every training from its newest checkpoint there.
        progress: show progress bars.
        prefix: prepended to every name (see :meth:`sub`).

    Raises:
        ConfigError: ``resume=True`` without a ``path``.

    Example:
        >>> import tempfile
        >>> run = RunDir(tempfile.mkdtemp(), progress=False)
        >>> run.sub("modular").checkpoints("find").parts[-3:]
        ('checkpoints', 'modular', 'find')
    """

    def __init__(self, path: str | Path | None = None, *, resume: bool = False, progress: bool = True,
                 prefix: str = "") -> None:
        if resume and path is None:
            raise ConfigError("resume=True needs a run folder to resume from: RunDir(path, resume=True)")
        self.path = None if path is None else Path(path)
        self.resume, self.progress, self.prefix = bool(resume), bool(progress), prefix

    def _named(self, *parts: str) -> Path | None:
        if self.path is None:
            return None
        return self.path.joinpath(*parts[:-1], *(p for p in self.prefix.split("/") if p), parts[-1])

    def logger(self, name: str) -> RunLogger | None:
        """An open :class:`RunLogger` in ``tensorboard/NAME`` (the caller closes it), or ``None``."""
        folder = self._named("tensorboard", name)
        return None if folder is None else RunLogger(folder)

    def checkpoints(self, name: str) -> Path | None:
        """The checkpoint folder ``checkpoints/NAME``, or ``None`` when the run writes nothing."""
        return self._named("checkpoints", name)

    def folder(self, name: str) -> Path:
        """A folder ``NAME`` for whatever else a training keeps (created).

        Raises:
            ConfigError: the run writes nothing (``RunDir()``).
        """
        folder = self._named(name)
        if folder is None:
            raise ConfigError(f"this training keeps files ({name!r}): give it a run folder, RunDir(path)")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def sub(self, name: str) -> RunDir:
        """The same folder, resume and progress, with names prefixed by ``NAME/``."""
        prefix = f"{self.prefix}/{name}" if self.prefix else name
        return RunDir(self.path, resume=self.resume, progress=self.progress, prefix=prefix)

    def quiet(self) -> RunDir:
        """The same run without progress bars (for trainings inside another one's bar, or in workers)."""
        return RunDir(self.path, resume=self.resume, progress=False, prefix=self.prefix)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, resume={self.resume}, progress={self.progress}, prefix={self.prefix!r})"
