"""The process-wide switch for runtime interface checking."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["check_interfaces", "interfaces_checked", "checking_interfaces"]

_enabled = False


def check_interfaces(enabled: bool = True) -> bool:
    """Switch runtime interface checking on or off; returns the previous setting.

    When on, every :class:`~modnets.modules.TypedModule` validates its inputs and its output against its
    signature's data types and raises :class:`~modnets.errors.InterfaceError` naming the module, the type
    and what was wrong. Off by default: validation costs a device sync per interface.

    Example:
        >>> import modnets
        >>> previous = modnets.check_interfaces(True)
        >>> _ = modnets.check_interfaces(previous)
    """
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def interfaces_checked() -> bool:
    """Whether runtime interface checking is on."""
    return _enabled


@contextmanager
def checking_interfaces(enabled: bool = True) -> Iterator[None]:
    """Context manager form of :func:`check_interfaces`, restoring the previous setting on exit."""
    previous = check_interfaces(enabled)
    try:
        yield
    finally:
        check_interfaces(previous)
