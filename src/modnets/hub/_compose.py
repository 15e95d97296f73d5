"""Composition over the hub: every type-correct program of stored modules from the values a caller has to
the value it needs, up to a size bound (thesis 5.3: data types make the search for module combinations a
cheap hard filter).

The stored modules' signatures (from the index, no weights read) and the caller's inputs, as leaves, form a
:class:`~modnets.compose.ProgramSpace`; its members are the candidate compositions. A module that takes an
argument (``find[red]``) appears without one: the index does not record argument vocabularies, so such a
composition names its structure; give the loaded library to a :class:`~modnets.compose.ProgramPolicy`
(whose space lists the arguments) or fill the arguments in before running it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from ..compose import Library, Program, ProgramSpace
from ..errors import ConfigError, HubError
from ..modules import PerArgument, Signature, Typed, TypedModule
from ..types import DataType
from ._manifest import HubEntry

if TYPE_CHECKING:
    from ._store import Hub

__all__ = ["Composition", "compose_entries"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Input(TypedModule):
    """A leaf that hands over one of the caller's inputs, passed to the library as context of that name."""

    constrains_output = False

    def __init__(self, name: str, type_: DataType) -> None:
        super().__init__(Signature(output=type_, context={name: type_}))
        self.input_name = name

    def compute(self, *, arg: Tensor | None = None, **context: Tensor) -> Tensor:
        return context[self.input_name]


@dataclass(frozen=True)
class Composition:
    """A type-correct program over stored modules, found by :meth:`~modnets.hub.Hub.compose`.

    Attributes:
        program: the program; its calls are the entries' call names and the caller's input names.
        entries: call name -> the hub entry it runs (``"clevr_find"`` for the entry ``clevr-find``).
        inputs: the caller's inputs used as leaves: name -> type (fed to the loaded library by name).
        hub: the hub the entries are in.
    """

    program: Program
    entries: Mapping[str, HubEntry]
    inputs: Mapping[str, DataType]
    hub: Hub

    def load(self, *, frozen: bool = True) -> Library:
        """The library that runs :attr:`program`: the entries loaded (checked, as :meth:`Hub.load`), and one
        leaf per input, which reads the input passed by name: ``library([program] * B, x=tensor, ...)``.

        Args:
            frozen: load the modules frozen (no gradients, eval mode), to reuse them as they are.
        """
        modules = {}
        for call, entry in self.entries.items():
            module = self.hub.load(entry.name, entry.version, frozen=frozen)
            modules[call] = module if isinstance(module, TypedModule | PerArgument) else Typed(module, entry.signature)
        modules.update({name: _Input(name, t) for name, t in self.inputs.items()})
        return Library(modules)

    def __str__(self) -> str:
        return str(self.program)


def compose_entries(
    hub: Hub,
    entries: Sequence[HubEntry],
    *,
    inputs: Sequence[DataType] | Mapping[str, DataType] | None,
    output: DataType,
    context: Mapping[str, DataType] | None,
    max_size: int,
    max_depth: int | None,
    use_all_inputs: bool,
    limit: int | None,
) -> list[Composition]:
    """The compositions of :meth:`Hub.compose` over the given entries (see there)."""
    named = _input_names(inputs)
    offered = dict(context or {})
    for name, t in (*named.items(), *offered.items(), ("output", output)):
        if not isinstance(t, DataType):
            raise HubError(f"compose {name!r} must be a data type (e.g. Mask(), Probs(26)), got {t!r}")
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
        raise HubError(f"compose max_size must be an int >= 1, got {max_size!r}")
    runnable = [e for e in entries if all(n in offered and want.accepts(offered[n]) for n, want in e.signature.context)]
    calls: dict[str, HubEntry] = {}
    for entry in runnable:
        call = _call_name(entry.name)
        if call in calls or call in named:
            call = f"{call}_v{entry.version}"
        calls[call] = entry
    signatures = {call: e.signature for call, e in calls.items()}
    signatures.update({name: Signature(output=t) for name, t in named.items()})
    if not signatures:
        return []
    try:
        space = ProgramSpace(signatures, output=output, max_size=max_size, max_depth=max_depth)
    except ConfigError as e:
        if "holds no program" in str(e):
            return []
        raise HubError(f"compose: {e}") from None
    found = []
    for program in space.programs():
        used = {c.name for c in program.unique_calls()}
        if use_all_inputs and not set(named) <= used:
            continue
        found.append(Composition(program, {c: calls[c] for c in sorted(used) if c in calls},
                                 {n: t for n, t in named.items() if n in used}, hub))
        if limit is not None and len(found) >= limit:
            break
    return found


def _input_names(inputs: Sequence[DataType] | Mapping[str, DataType] | None) -> dict[str, DataType]:
    if inputs is None:
        return {}
    if isinstance(inputs, Mapping):
        bad = [n for n in inputs if not isinstance(n, str) or not _IDENTIFIER.fullmatch(n)]
        if bad:
            raise HubError(f"compose inputs must be named by identifiers (letters, digits, _), got {bad}")
        return dict(inputs)
    if isinstance(inputs, str) or not isinstance(inputs, Sequence):
        raise HubError(f"compose inputs must be a list of data types or a dict of them, got {inputs!r}")
    return {f"input{i}": t for i, t in enumerate(inputs)}


def _call_name(entry_name: str) -> str:
    """An entry name as a program call name: ``clevr-find`` -> ``clevr_find``; a leading digit gets ``m_``."""
    call = re.sub(r"[^A-Za-z0-9_]", "_", entry_name)
    return call if _IDENTIFIER.fullmatch(call) else f"m_{call}"
