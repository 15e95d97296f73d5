"""JSON forms of data types, signatures and constructor configs, as written into manifests."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, HubError
from ..modules import Signature
from ..types import DataType
from ._registry import type_class, type_name

__all__ = [
    "decode_config",
    "decode_signature",
    "decode_type",
    "encode_config",
    "encode_signature",
    "encode_type",
    "parse_type",
]

_TYPE_KEY = "$type"
_SIGNATURE_KEY = "$signature"


def encode_type(dtype: DataType) -> dict[str, Any]:
    """``Mask()`` -> ``{"$type": "Mask", "size": None, "low": 0.0, "high": 1.0}``.

    Raises:
        HubError: the type is not on the allow-list.
    """
    data: dict[str, Any] = {_TYPE_KEY: type_name(dtype)}
    for f in dataclasses.fields(dtype):
        if f.init:
            data[f.name] = _encode_value(getattr(dtype, f.name), f"{type(dtype).__name__}.{f.name}")
    return data


def decode_type(data: object) -> DataType:
    """Inverse of :func:`encode_type`.

    Raises:
        HubError: not a type record, an unknown type, or fields the type does not accept.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get(_TYPE_KEY), str):
        raise HubError(f"expected a data type record {{'$type': NAME, ...}}, got {data!r}")
    cls = type_class(data[_TYPE_KEY])
    fields = {k: v for k, v in data.items() if k != _TYPE_KEY}
    accepted = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(fields) - accepted)
    if unknown:
        raise HubError(f"data type {data[_TYPE_KEY]} has no fields {unknown}; accepted: {sorted(accepted)}")
    try:
        return cls(**fields)
    except (ConfigError, TypeError) as e:
        raise HubError(f"invalid data type record {dict(data)!r}: {e}") from None


def encode_signature(signature: Signature) -> dict[str, Any]:
    """A signature as ``{"inputs": [[name, type], ...], "output": type, "context": [[name, type], ...]}``."""
    return {
        "inputs": [[n, encode_type(t)] for n, t in signature.inputs],
        "output": encode_type(signature.output),
        "context": [[n, encode_type(t)] for n, t in signature.context],
    }


def decode_signature(data: object) -> Signature:
    """Inverse of :func:`encode_signature`.

    Raises:
        HubError: a malformed record.
    """
    if not isinstance(data, Mapping) or set(data) != {"inputs", "output", "context"}:
        raise HubError(f"expected a signature record with keys inputs, output, context, got {data!r}")

    def named(items: object, what: str) -> list[tuple[str, DataType]]:
        if not isinstance(items, list) or not all(
            isinstance(i, list) and len(i) == 2 and isinstance(i[0], str) for i in items
        ):
            raise HubError(f"signature {what} must be a list of [name, type] pairs, got {items!r}")
        return [(n, decode_type(t)) for n, t in items]

    try:
        return Signature(
            inputs=named(data["inputs"], "inputs"),
            output=decode_type(data["output"]),
            context=named(data["context"], "context"),
        )
    except ConfigError as e:
        raise HubError(f"invalid signature record: {e}") from None


def encode_config(config: Mapping[str, Any], *, owner: str = "module") -> dict[str, Any]:
    """Constructor keyword arguments as JSON: numbers, strings, booleans, ``None``, lists (from lists
    and tuples), dicts with string keys, data types and signatures.

    Args:
        config: keyword arguments.
        owner: who they belong to, for messages.

    Raises:
        HubError: a value of any other kind (named by its key path), or a non-finite float.
    """
    return {k: _encode_value(v, f"{owner} config {k!r}") for k, v in config.items()}


def decode_config(data: object) -> dict[str, Any]:
    """Inverse of :func:`encode_config` (lists come back as lists).

    Raises:
        HubError: malformed data or an unknown data type.
    """
    if not isinstance(data, Mapping):
        raise HubError(f"a module config must be a JSON object, got {type(data).__name__}")
    return {k: _decode_value(v) for k, v in data.items()}


def _encode_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HubError(f"{where} is {value}; only finite numbers can be stored")
        return value
    if isinstance(value, DataType):
        return encode_type(value)
    if isinstance(value, Signature):
        return {_SIGNATURE_KEY: encode_signature(value)}
    if isinstance(value, list | tuple):
        return [_encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str) or k.startswith("$")]
        if bad:
            raise HubError(f"{where} has keys {bad}; keys must be strings not starting with '$'")
        return {k: _encode_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise HubError(
        f"{where} is a {type(value).__name__}, which cannot be stored; accepted: None, bool, int, float, str, "
        "list, tuple, dict, DataType, Signature"
    )


def _decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    if isinstance(value, Mapping):
        if _TYPE_KEY in value:
            return decode_type(value)
        if _SIGNATURE_KEY in value:
            if len(value) != 1:
                raise HubError(f"a signature value must hold only the '$signature' key, got {sorted(value)}")
            return decode_signature(value[_SIGNATURE_KEY])
        return {k: _decode_value(v) for k, v in value.items()}
    return value


_TYPE_TEXT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\(\s*(\d+)\s*\))?\s*")


def parse_type(text: str) -> DataType:
    """A data type from its short text form: ``"Mask"``, ``"Probs(26)"``, ``"FeatureMap(66)"``.

    Raises:
        HubError: text of another form, or an unknown type.

    Example:
        >>> parse_type("Probs(26)")
        Probs(size=26)
    """
    match = _TYPE_TEXT.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise HubError(f"invalid data type {text!r}; accepted: NAME or NAME(SIZE), e.g. Mask, Probs(26)")
    cls = type_class(match.group(1))
    try:
        return cls() if match.group(2) is None else cls(size=int(match.group(2)))
    except ConfigError as e:
        raise HubError(f"invalid data type {text!r}: {e}") from None
