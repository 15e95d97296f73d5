"""Run logging: scalars to a JSONL file and to TensorBoard in one run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["RunLogger"]


class RunLogger:
    """Log scalars to ``DIR/scalars.jsonl`` and (when available) TensorBoard event files in ``DIR``.

    Args:
        directory: the run folder (created).
        tensorboard: also write TensorBoard events.

    Example:
        >>> import tempfile
        >>> with RunLogger(tempfile.mkdtemp(), tensorboard=False) as log:
        ...     log.log(1, loss=0.5)
    """

    def __init__(self, directory: str | Path, *, tensorboard: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Line-buffered, so that a long run can be followed while it trains.
        self._jsonl = open(self.directory / "scalars.jsonl", "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.directory))

    def log(self, step: int, **scalars: Any) -> None:
        """Record scalar values (floats, ints or 0-d tensors) at a step."""
        values = {k: float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), **{k: v if math.isfinite(v) else str(v)
                                                               for k, v in values.items()}}) + "\n")
        if self._writer is not None:
            for k, v in values.items():
                self._writer.add_scalar(k, v, step)

    def close(self) -> None:
        """Flush and close the files."""
        self._jsonl.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
