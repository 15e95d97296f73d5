"""Griffe extension used by the documentation build only.

modnets docstrings follow the Google style but write ``Example:`` (which Griffe reads as an admonition, not
as a code section) and Sphinx roles such as ``:class:`~modnets.train.fit```. This extension rewrites both
before the docstrings are parsed, so the reference pages render the examples as code and the roles as
inline code. It changes nothing in the package itself.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def rewrite(text: str) -> str:
    """The docstring with ``Example:`` read as ``Examples:`` and Sphinx roles as inline code."""
    return _ROLE.sub(_role, _EXAMPLE.sub(r"\1Examples:", text))


class ModnetsDocstrings(griffe.Extension):
    """Rewrite every docstring with :func:`rewrite` once the package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg, set()):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value)


def _walk(obj: griffe.Object, seen: set[str]):
    if obj.path in seen:
        return
    seen.add(obj.path)
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member, seen)
