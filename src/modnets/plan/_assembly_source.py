"""A user's assembly, from a JSON file or from Python code (``package.module:attribute``)."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from ..errors import ConfigError
from ._assembly import Assembly

__all__ = ["read_assembly"]

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_REFERENCE = re.compile(rf"({_DOTTED}):({_DOTTED})")
_MAX_BYTES = 16 * 2**20


def read_assembly(source: str | Path) -> Assembly:
    """The assembly a user points to: a JSON file, or an attribute of an importable module.

    Args:
        source: a path to a JSON file (as :meth:`Assembly.to_json` writes it), or
            ``"package.module:attribute"`` naming an :class:`Assembly` or a function that returns one when
            called without arguments (the module must be importable: installed, or on ``PYTHONPATH``).

    Returns:
        the assembly.

    Raises:
        ConfigError: a file that cannot be read or does not hold a valid assembly, a module that cannot be
            imported, a missing attribute, a function that needs arguments or returns something else than an
            assembly, or a source that is neither a file nor a reference.
    """
    text = str(source)
    path = Path(text)
    if isinstance(source, Path) or text.endswith(".json") or path.is_file():
        return _from_file(path)
    match = _REFERENCE.fullmatch(text)
    if match is None:
        raise ConfigError(
            f"assembly source {text!r} is neither a JSON file nor a reference 'package.module:attribute'"
        )
    return _from_reference(text, match.group(1), match.group(2))


def _from_file(path: Path) -> Assembly:
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise ConfigError(f"assembly file {path} is larger than {_MAX_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read assembly file {path} ({e.strerror or e})") from None
    return Assembly.from_json(raw, where=str(path))


def _from_reference(text: str, module_name: str, attribute: str) -> Assembly:
    try:
        target = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"cannot import module {module_name!r} of assembly reference {text!r} ({e}); is it installed or on "
            "PYTHONPATH?"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"assembly reference {text!r}: {getattr(target, '__name__', target)!r} has no "
                              f"attribute {part!r}")
        target = getattr(target, part)
    if callable(target) and not isinstance(target, Assembly):
        try:
            inspect.signature(target).bind()
        except TypeError:
            raise ConfigError(f"assembly reference {text!r} is a function that needs arguments; it must return "
                              "an Assembly when called without any") from None
        except ValueError:  # no signature to inspect (a builtin): calling it says the rest
            pass
        target = target()
    if not isinstance(target, Assembly):
        raise ConfigError(
            f"assembly reference {text!r} gives a {type(target).__name__}, not a modnets.plan.Assembly"
        )
    return target
