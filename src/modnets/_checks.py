"""``check_ints``: the integer-field check shared by the configuration dataclasses."""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["check_ints"]


def check_ints(config: object, *names: str, minimum: int = 1) -> None:
    """Raise :class:`ConfigError` unless each named field of ``config`` is an int (not a bool) >= ``minimum``.

    The message names the class and the field, the value received and what is accepted.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Settings:
        ...     epochs: int = 0
        >>> check_ints(Settings(), "epochs")
        Traceback (most recent call last):
        modnets.errors.ConfigError: Settings.epochs must be an int >= 1, got 0
    """
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{type(config).__name__}.{name} must be an int >= {minimum}, got {value!r}")
