"""Entry names and versions: what a hub accepts, and references written ``name@version``."""

from __future__ import annotations

import re
from typing import NamedTuple

from ..errors import HubError

__all__ = ["EntryRef", "parse_ref", "validate_name", "validate_version"]

#: Lower-case letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at most 100
#: characters. One path component: no separator, no ``..``, nothing absolute, and no two names that
#: differ only in case (they would collide on case-insensitive file systems).
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_ACCEPTED = "1-100 characters from a-z, 0-9, '.', '_', '-', starting with a letter or digit"


class EntryRef(NamedTuple):
    """A reference to an entry: its name and version (``None``: the latest)."""

    name: str
    version: int | None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def validate_name(name: object) -> str:
    """Return ``name`` when it is a valid entry name.

    Raises:
        HubError: not a string, or characters outside :data:`NAME_PATTERN` (path separators, ``..``,
            absolute paths, upper case, spaces ...).

    Example:
        >>> validate_name("clevr-find")
        'clevr-find'
        >>> validate_name("../etc")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        modnets.errors.HubError: invalid entry name '../etc'; accepted: 1-100 characters from a-z, 0-9, ...
    """
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise HubError(f"invalid entry name {name!r}; accepted: {_ACCEPTED}")
    return name


def validate_version(version: object) -> int:
    """Return ``version`` as an int when it is a valid version (an integer >= 1, or its decimal text).

    Raises:
        HubError: anything else (``0``, ``-1``, ``"1.0"``, ``"../1"``, ``True``).
    """
    if isinstance(version, str) and version.isascii() and version.isdigit() and not version.startswith("0"):
        return int(version)
    if isinstance(version, int) and not isinstance(version, bool) and version >= 1:
        return version
    raise HubError(f"invalid version {version!r}; accepted: an integer >= 1")


def parse_ref(text: str) -> EntryRef:
    """Parse ``name`` or ``name@version``.

    Raises:
        HubError: an invalid name or version.

    Example:
        >>> parse_ref("clevr-find@2")
        EntryRef(name='clevr-find', version=2)
    """
    if not isinstance(text, str):
        raise HubError(f"invalid entry reference {text!r}; accepted: 'name' or 'name@version'")
    name, sep, version = text.partition("@")
    return EntryRef(validate_name(name), validate_version(version) if sep else None)
