"""Search by signature: which modules can take the values a caller has and give the value it needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import HubError
from ..modules import Signature
from ..types import DataType

__all__ = ["SignatureQuery"]


@dataclass(frozen=True)
class SignatureQuery:
    """A partial signature to match; every part left ``None`` matches anything.

    A module matches when each of its inputs accepts the value offered for it (``DataType.accepts``),
    the wanted output type accepts the module's output, and each of its context entries accepts the
    context offered under that name.

    Attributes:
        inputs: the values the caller will feed, in order (the module must take exactly these many), or
            by input name (the module's input names must be exactly these).
        output: the type the caller needs.
        context: the per-example context the caller can supply, by name (the module may use any part).

    Example:
        >>> from modnets.types import FeatureMap, Mask, Probs
        >>> relate_like = Signature(inputs={"mask": Mask()}, output=Mask(), context={"features": FeatureMap(8)})
        >>> SignatureQuery(inputs=[Mask()], output=Mask()).matches(relate_like)
        True
        >>> SignatureQuery(output=Probs(3)).matches(relate_like)
        False
        >>> SignatureQuery(context={"features": FeatureMap(16)}).matches(relate_like)
        False
    """

    inputs: Sequence[DataType] | Mapping[str, DataType] | None = None
    output: DataType | None = None
    context: Mapping[str, DataType] | None = None

    def __post_init__(self) -> None:
        if self.inputs is not None:
            if isinstance(self.inputs, Mapping):
                items = dict(self.inputs)
                values = list(items.values())
                if not all(isinstance(k, str) for k in items):
                    raise HubError(f"search inputs must be named by strings, got {list(items)}")
            elif isinstance(self.inputs, Sequence) and not isinstance(self.inputs, str):
                items = tuple(self.inputs)
                values = list(items)
            else:
                raise HubError(f"search inputs must be a list of data types or a dict of them, got {self.inputs!r}")
            _check_types(values, "inputs")
            object.__setattr__(self, "inputs", items)
        if self.output is not None:
            _check_types([self.output], "output")
        if self.context is not None:
            if not isinstance(self.context, Mapping) or not all(isinstance(k, str) for k in self.context):
                raise HubError(f"search context must be a dict of name -> data type, got {self.context!r}")
            _check_types(list(self.context.values()), "context")
            object.__setattr__(self, "context", dict(self.context))

    @property
    def arity(self) -> int | None:
        """The number of inputs a match must take, or ``None`` for any."""
        return None if self.inputs is None else len(self.inputs)

    def matches(self, signature: Signature) -> bool:
        """Whether a module of this signature fits the query."""
        if self.inputs is not None:
            if len(self.inputs) != signature.arity:
                return False
            if isinstance(self.inputs, Mapping):
                if set(self.inputs) != {n for n, _ in signature.inputs}:
                    return False
                offered = [self.inputs[n] for n, _ in signature.inputs]
            else:
                offered = list(self.inputs)
            if signature.accepts_inputs(tuple(offered)) is not None:
                return False
        if self.output is not None and not self.output.accepts(signature.output):
            return False
        if self.context is not None:
            for name, want in signature.context:
                if name not in self.context or not want.accepts(self.context[name]):
                    return False
        return True


def _check_types(values: list, what: str) -> None:
    for v in values:
        if not isinstance(v, DataType):
            raise HubError(f"search {what} must be data types (e.g. Mask(), Probs(26)), got {v!r}")
