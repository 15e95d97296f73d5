"""``num_threads``: run a block with a given number of intra-op CPU threads, restoring the old number."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import ConfigError

__all__ = ["num_threads"]


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Set ``torch.set_num_threads(n)`` inside the block; the previous value comes back afterwards.

    Example:
        >>> before = torch.get_num_threads()
        >>> with num_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"the number of threads must be a positive int, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
