"""The SCAN data set (Lake and Baroni, 2018): navigation commands and the action sequences they mean.

This file reads the released task files; :func:`~modnets.data.scan_commands` and
:func:`~modnets.data.scan_split` generate the same commands and splits from the grammar, with no files.

Each split is a text file (``tasks_train_simple.txt``, ``tasks_test_addprim_jump.txt``, ... from
https://github.com/brendenlake/SCAN) of one example per line::

    IN: jump twice after walk left OUT: I_TURN_LEFT I_WALK I_JUMP I_JUMP

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tasks.txt"
    >>> _ = path.write_text("IN: jump twice OUT: I_JUMP I_JUMP\\n")
    >>> load_scan(path)[0]
    ScanPair(command=('jump', 'twice'), actions=('I_JUMP', 'I_JUMP'))
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from torch.utils.data import Dataset

from ..errors import ConfigError, DataUnavailableError

__all__ = ["ScanDataset", "ScanPair", "load_scan"]

_SOURCE = "a SCAN task file from https://github.com/brendenlake/SCAN"
_IN, _OUT = "IN:", "OUT:"


class ScanPair(NamedTuple):
    """One SCAN example: the command's words and the actions it means."""

    command: tuple[str, ...]
    actions: tuple[str, ...]


class ScanDataset(Dataset):
    """SCAN examples: (command tokens, action tokens) pairs, in file order.

    Attributes:
        pairs: the examples.
        path: the file they were read from (``None`` when built in memory).
    """

    def __init__(self, pairs: Sequence[ScanPair], *, path: Path | None = None):
        for i, pair in enumerate(pairs):
            if not isinstance(pair, ScanPair) or not pair.command or not pair.actions:
                raise ConfigError(f"ScanDataset pair {i} must be a ScanPair of non-empty token tuples, got {pair!r}")
        self.pairs = list(pairs)
        self.path = path

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> ScanPair:
        i = operator.index(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a ScanDataset of {len(self)} pairs")
        return self.pairs[i]

    @property
    def command_words(self) -> tuple[str, ...]:
        """Every word of the commands, sorted."""
        return tuple(sorted({w for pair in self.pairs for w in pair.command}))

    @property
    def action_words(self) -> tuple[str, ...]:
        """Every action token, sorted."""
        return tuple(sorted({a for pair in self.pairs for a in pair.actions}))

    def __repr__(self) -> str:
        return f"ScanDataset(n={len(self)}, path={str(self.path) if self.path else None!r})"


def load_scan(path: str | Path) -> ScanDataset:
    """Read a SCAN task file: one ``IN: <command> OUT: <actions>`` example per line.

    Blank lines are skipped; every other line must hold a non-empty command and a non-empty action
    sequence.

    Raises:
        DataUnavailableError: the file is missing or unreadable, or a line is malformed; the message
            names the file and the line number (1-based).
    """
    path = Path(path)
    if not path.is_file():
        raise DataUnavailableError(f"SCAN file {path} is missing; expected {_SOURCE}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataUnavailableError(f"SCAN file {path} cannot be read as UTF-8 text ({e})") from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        words = line.split()
        if words[0] != _IN or words.count(_OUT) != 1 or _IN in words[1:]:
            raise DataUnavailableError(
                f"SCAN file {path}, line {number}: expected 'IN: <command> OUT: <actions>', got {line.strip()!r}"
            )
        cut = words.index(_OUT)
        command, actions = tuple(words[1:cut]), tuple(words[cut + 1:])
        if not command or not actions:
            empty = "command" if not command else "action sequence"
            raise DataUnavailableError(f"SCAN file {path}, line {number}: the {empty} is empty in {line.strip()!r}")
        pairs.append(ScanPair(command, actions))
    if not pairs:
        raise DataUnavailableError(f"SCAN file {path} holds no examples; expected {_SOURCE}")
    return ScanDataset(pairs, path=path)
