"""``Config``: the base of the configuration dataclasses, and the ways to change a config from outside.

A config is a ``@dataclass`` that subclasses :class:`Config` and checks its values in ``__post_init__``,
raising :class:`~modnets.errors.ConfigError` that names the field, the value and what is accepted. The base
adds the round trip to JSON: :meth:`Config.to_dict` gives plain JSON values (tuples as lists, nested configs
as dicts) and :meth:`Config.from_dict` rebuilds the config from them. Rebuilding checks every key and the
type of every value against the field's annotation (``int``, ``float``, ``bool``, ``str``, ``X | None``,
``tuple[X, ...]``, ``list[X]``, ``dict[str, X]``, a nested config) before the config's own checks run,
so a file or a command line can only produce a config that could have been constructed.

:func:`with_values` replaces fields from a mapping (a config file, possibly partial), :func:`with_overrides`
from ``PATH=VALUE`` strings (``modnets run NAME --set fit.lr=1e-3``) and :func:`read_config_file` reads
a mapping from a JSON or YAML file.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import numbers
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError, MissingDependencyError

__all__ = ["Config", "read_config_file", "with_overrides", "with_values"]

C = TypeVar("C")


class Config:
    """Base of the configuration dataclasses: a JSON round trip and a checked reconstruction.

    Subclasses are ``@dataclass`` classes that validate their values in ``__post_init__``. Nested configs
    are fields annotated with another config class.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Settings(Config):
        ...     epochs: int = 10
        ...     lr: float = 1e-3
        ...     depths: tuple[int, ...] = (2, 3)
        >>> Settings().to_dict()
        {'epochs': 10, 'lr': 0.001, 'depths': [2, 3]}
        >>> Settings.from_dict({"lr": 1, "depths": [4]})
        Settings(epochs=10, lr=1.0, depths=(4,))
        >>> Settings.from_dict({"epochs": "ten"})
        Traceback (most recent call last):
        modnets.errors.ConfigError: Settings.epochs must be an int, got 'ten'
    """

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values: tuples as lists, nested configs as dicts."""
        return _to_json(self)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Rebuild a config from the output of :meth:`to_dict`; keys left out keep their defaults.

        Integers are accepted for ``float`` fields and lists for tuples; nested configs are rebuilt from
        nested mappings.

        Raises:
            ConfigError: ``data`` is not a mapping, has a key that is not a field (the message names the key
                and the class and lists the accepted keys), a value of the wrong type (the message names
                the field), or a value that the config's own checks refuse.
        """
        return _build(cls, data, _class_name(cls))


def with_values(config: C, data: Mapping[str, Any]) -> C:
    """A copy of the dataclass ``config`` with the fields in ``data`` replaced, checked as :meth:`Config.from_dict`.

    A mapping given for a nested config changes only the fields it names, so a partial config file changes
    only what it says.

    Raises:
        ConfigError: as :meth:`Config.from_dict`.
    """
    _check_dataclass(config, "with_values")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_class_name(type(config))} values must be a mapping of fields, got {_short(data)}")
    return _build(type(config), _merge(_to_json(config), data), _class_name(type(config)))


def with_overrides(config: C, overrides: Iterable[str]) -> C:
    """A copy of the dataclass ``config`` with fields set by ``PATH=VALUE`` strings, checked again.

    ``PATH`` is a dotted field path (``fit.lr``, ``compositions.data.n_train``). A path whose first name is a
    top-level field names that one field; any other path sets every nested field whose path ends with it,
    so ``fit.epochs=1`` sets both ``compositions.fit.epochs`` and ``images.fit.epochs`` of a config whose
    top level has no ``fit``. ``VALUE`` is read as JSON (``1e-3``, ``true``, ``null``, ``[2, 3]``,
    ``{"epochs": 1}``, ``"text"``); anything else is a string (``scorer=exact``). A mapping given for a
    nested config changes only the fields it names. The overrides apply in order.

    Raises:
        ConfigError: an override that is not ``PATH=VALUE``, a path that matches no field (the message lists
            the nearest paths, or all of them), or a value of the wrong type or out of range.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Settings(Config):
        ...     epochs: int = 10
        ...     lr: float = 1e-3
        >>> with_overrides(Settings(), ["lr=0.01", "epochs=2"])
        Settings(epochs=2, lr=0.01)
        >>> with_overrides(Settings(), ["epoch=2"])
        Traceback (most recent call last):
        modnets.errors.ConfigError: 'epoch=2' matches no field of Settings; nearest: epochs
    """
    _check_dataclass(config, "with_overrides")
    data = _to_json(config)
    paths = list(_field_paths(config))
    top = {f.name for f in dataclasses.fields(config)}
    for item in overrides:
        path, value = _parse_override(item)
        if path[0] in top:
            targets = [path] if path in paths else []
        else:
            targets = [p for p in paths if p[-len(path):] == path]
        if not targets:
            raise ConfigError(f"{item!r} matches no field of {_class_name(type(config))}; "
                              + _nearest(".".join(path), paths))
        for target in targets:
            parent = data
            for name in target[:-1]:
                parent = parent.get(name) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):  # an earlier override replaced the nested config
                raise ConfigError(f"{item!r}: an earlier override set {'.'.join(target[:-1])} to a value that is "
                                  "not a mapping of fields")
            old = parent[target[-1]]
            parent[target[-1]] = _merge(old, value) if isinstance(old, dict) and isinstance(value, Mapping) else value
    return _build(type(config), data, _class_name(type(config)))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping held by a JSON file, or by a YAML file (names ending in ``.yaml`` or ``.yml``).

    YAML is read with PyYAML's safe loader; ``1e-3`` is read as a number there too.

    Raises:
        ConfigError: the file cannot be read, does not parse, or does not hold a mapping.
        MissingDependencyError: a YAML file and PyYAML is not installed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {getattr(e, 'strerror', None) or e}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise MissingDependencyError(f"reading the YAML config file {str(path)!r} needs PyYAML: "
                                         "pip install pyyaml (or give a JSON file)") from None
        try:
            data = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: no arbitrary objects
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            at = f" at line {where.line + 1} column {where.column + 1}" if where is not None else ""
            problem = getattr(e, "problem", None) or type(e).__name__
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {problem}{at}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {str(path)!r} is not valid JSON: {e.msg} at line {e.lineno} column "
                              f"{e.colno} (YAML files must end in .yaml or .yml)") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of config fields, got "
                          f"{type(data).__name__}")
    return dict(data)


# ------------------------------------------------------------------------------------------------ internals
def _class_name(cls: type) -> str:
    # every experiment's class is called ``Config``: its module tells them apart (``routing.Config``)
    if cls.__name__ == "Config" and cls is not Config:
        return f"{cls.__module__.rpartition('.')[2]}.Config"
    return cls.__name__


def _check_dataclass(config: object, caller: str) -> None:
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"{caller} needs a dataclass instance (a config), got {type(config).__name__}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _merge(old: Any, new: Any) -> Any:
    """``new`` laid over ``old``: mappings merge key by key, anything else replaces."""
    if not (isinstance(old, dict) and isinstance(new, Mapping)):
        return new
    merged = dict(old)
    for key, value in new.items():
        merged[key] = _merge(old[key], value) if key in old else value
    return merged


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type[C], data: Any, where: str) -> C:
    """An instance of the dataclass ``cls`` from the mapping ``data``; ``where`` names it in messages."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of {_class_name(cls)} fields, got {_short(data)}")
    accepted = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in accepted:
            close = difflib.get_close_matches(str(key), list(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            owner = _class_name(cls) if where == _class_name(cls) else f"{where} ({_class_name(cls)})"
            raise ConfigError(f"unknown key {key!r} in {owner}{hint}; accepted keys: {', '.join(accepted)}")
    for name, f in accepted.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name} is required ({_class_name(cls)} has no default for it)")
    hints = _hints(cls)
    values = {key: _convert(value, hints.get(key, Any), f"{where}.{key}") for key, value in data.items()}
    return cls(**values)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the annotation ``hint`` (and converted: lists to tuples, ints to floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        nested = [a for a in options if dataclasses.is_dataclass(a)]
        if len(nested) == 1 and isinstance(value, Mapping):  # a nested config: its own messages are the precise ones
            return _convert(value, nested[0], where)
        for option in options:
            try:
                return _convert(value, option, where)
            except ConfigError:
                continue
        raise _wrong(value, hint, where)
    if hint is type(None) or hint is None:
        if value is None:
            return None
        raise _wrong(value, hint, where)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return _build(hint, value, where)
        raise _wrong(value, hint, where)
    if origin in (tuple, list):
        if not isinstance(value, tuple | list):
            raise _wrong(value, hint, where)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _wrong(value, hint, where)
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _wrong(value, hint, where)
        key_hint, value_hint = args if args else (Any, Any)
        return {_convert(k, key_hint, where): _convert(v, value_hint, f"{where}[{k!r}]") for k, v in value.items()}
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _wrong(value, hint, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(value, hint, where)
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _wrong(value, hint, where)
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _wrong(value, hint, where)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _wrong(value, hint, where)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _wrong(value, hint, where)
    return value  # an annotation this function does not know: left to the config's own checks


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(a) for a in args)
    if hint is type(None) or hint is None:
        return "null"
    if dataclasses.is_dataclass(hint):
        return f"a mapping of {_class_name(hint)} fields"
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        return f"a list of {len(args)} items ({', '.join(_describe(a) for a in args)})"
    if origin in (tuple, list):
        return f"a list (items: {_describe(args[0])})" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    if origin is typing.Literal:
        return f"one of {args}"
    names = {bool: "true or false", int: "an int", float: "a number", str: "a string"}
    return names.get(hint) or f"a {getattr(hint, '__name__', hint)}"


def _wrong(value: Any, hint: Any, where: str) -> ConfigError:
    return ConfigError(f"{where} must be {_describe(hint)}, got {_short(value)}")


def _field_paths(config: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every field's path, nested configs first by themselves, then by their fields."""
    for f in dataclasses.fields(config):
        path = (*prefix, f.name)
        yield path
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _field_paths(value, path)


_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _parse_override(item: str) -> tuple[tuple[str, ...], Any]:
    """``"fit.lr=1e-3"`` -> ``(("fit", "lr"), 0.001)``."""
    path, sep, text = str(item).partition("=")
    path = path.strip()
    if not sep or not _PATH.fullmatch(path):
        raise ConfigError(f"invalid override {item!r}; expected PATH=VALUE, e.g. fit.lr=1e-3 or methods='[\"em\"]'")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return tuple(path.split(".")), value


def _nearest(path: str, paths: list[tuple[str, ...]]) -> str:
    """``nearest: a, b`` (paths that are spelled alike, whole or by their last names), else every path."""
    n = path.count(".") + 1
    full = {".".join(p): p for p in paths}
    tails: dict[str, list[str]] = {}
    for text, p in full.items():
        tails.setdefault(".".join(p[-n:]), []).append(text)
    close = [t for tail in difflib.get_close_matches(path, list(tails), n=5) for t in tails[tail]]
    close += difflib.get_close_matches(path, list(full), n=5)
    close = list(dict.fromkeys(close))[:8]
    if close:
        return f"nearest: {', '.join(close)}"
    return f"valid paths: {', '.join(full)}"


@functools.cache
def _yaml_loader() -> type:
    """PyYAML's safe loader, reading ``1e-3`` as a number (YAML 1.1 would need ``1.0e-3``)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."),
    )
    return Loader
