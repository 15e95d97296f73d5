"""Signatures: the named, typed inputs and the output type of a module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..types import DataType

__all__ = ["Signature"]

Fields = tuple[tuple[str, DataType], ...]


def _fields(value: Mapping[str, DataType] | Fields, what: str) -> Fields:
    items = tuple(value.items()) if isinstance(value, Mapping) else tuple(value)
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ConfigError(f"Signature {what} must map names to data types, got {item!r}")
        if not isinstance(item[1], DataType):
            raise ConfigError(f"Signature {what} {item[0]!r} must be a DataType, got {type(item[1]).__name__}")
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ConfigError(f"Signature {what} names must be unique, got {names}")
    return items


@dataclass(frozen=True, init=False)
class Signature:
    """Named input types -> output type.

    ``inputs`` are the values a program feeds the module (its children, in order); ``context`` are
    per-example tensors the executor supplies to every call (image features, a question encoding).

    Example:
        >>> from modnets.types import Latent, Mask
        >>> sig = Signature(inputs={"mask": Mask()}, output=Mask(), context={"features": Latent()})
        >>> str(sig)
        '(mask: Mask; features: Latent) -> Mask'
    """

    inputs: Fields
    output: DataType
    context: Fields

    def __init__(
        self,
        *,
        inputs: Mapping[str, DataType] | Fields = (),
        output: DataType,
        context: Mapping[str, DataType] | Fields = (),
    ) -> None:
        if not isinstance(output, DataType):
            raise ConfigError(f"Signature output must be a DataType, got {type(output).__name__}")
        object.__setattr__(self, "inputs", _fields(inputs, "inputs"))
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "context", _fields(context, "context"))

    @property
    def arity(self) -> int:
        """Number of program inputs."""
        return len(self.inputs)

    def accepts_inputs(self, types: tuple[DataType, ...]) -> int | None:
        """Index of the first input that does not accept the given type, or ``None`` when all do."""
        for i, ((_, want), got) in enumerate(zip(self.inputs, types, strict=True)):
            if not want.accepts(got):
                return i
        return None

    def __str__(self) -> str:
        ins = ", ".join(f"{n}: {t}" for n, t in self.inputs)
        ctx = ", ".join(f"{n}: {t}" for n, t in self.context)
        both = f"{ins}; {ctx}" if ins and ctx else ins or ctx
        return f"({both}) -> {self.output}"
