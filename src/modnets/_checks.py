"""``check_ints`` and ``check_image_size``: the field checks shared by the configuration dataclasses and models."""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["check_image_size", "check_ints"]


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


def check_image_size(size: object, *, owner: str = "") -> None:
    """Raise :class:`ConfigError` unless ``size`` is a power of two >= 8 (what a stride-2 CNN down to 4x4 needs).

    ``owner`` prefixes the field in the message (``"Config."`` gives ``Config.image_size must be ...``).

    Example:
        >>> check_image_size(48)
        Traceback (most recent call last):
        modnets.errors.ConfigError: image_size must be a power of two >= 8, got 48
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 8 or size & (size - 1):
        raise ConfigError(f"{owner}image_size must be a power of two >= 8, got {size!r}")
