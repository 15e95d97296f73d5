"""The space of programs a library can form: typed calls, the slots they open, size and depth bounds.

A :class:`ProgramSpace` lists the *calls* of a library as tokens (``find[red]``, ``relate[left]``, ``and``,
``exist`` ...: one token per module and argument value) and writes a program as its calls in prefix order
(root first, then each input's sub-program, left to right). A program is a member of the space when it
type-checks against the signatures, produces a value the wanted ``output`` type accepts, and holds at most
``max_size`` calls on at most ``max_depth`` levels.

Decoding a program token by token keeps a stack of *open slots*, each an input still to be filled, with
the type it accepts and its depth. The space's tables say, for every slot, which tokens can fill it such
that the whole program can still be finished within the bounds: ``min_size[type, height]`` is the fewest
calls of any program whose output the type accepts and whose height is at most ``height``, so a token is
allowed when its own smallest completion plus the smallest completions of every other open slot fit in
the calls left. Every prefix decoded under these masks can be completed, and every completion is a
member: a policy that only picks allowed tokens produces type-correct programs by construction
(:class:`~modnets.compose.ProgramPolicy`), and :meth:`ProgramSpace.enumerate` lists the members exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError, TypeMismatchError, UnknownNameError
from ..modules import Signature
from ..types import DataType
from ._program import Program

__all__ = ["INFEASIBLE", "ProgramSpace"]

#: The size of an impossible completion in the tables (larger than any size bound).
INFEASIBLE = 1 << 30


@dataclass(frozen=True)
class _Token:
    name: str
    arg: str | None
    inputs: tuple[DataType, ...]
    output: DataType

    @property
    def key(self) -> str:
        return self.name if self.arg is None else f"{self.name}[{self.arg}]"


class ProgramSpace:
    """The programs of bounded size and depth that a set of typed modules can form, as token sequences.

    Args:
        signatures: module name -> signature (a :class:`~modnets.compose.Library`'s, or a hub's entries').
        output: the type the programs must produce; a root is allowed when ``output.accepts`` its output.
        max_size: most calls in a program (>= 1).
        max_depth: most calls on a root-to-leaf path; ``None``: bounded by ``max_size`` only.
        arguments: module name -> its argument values, for the modules that take an argument (each value
            is one token, ``name[value]``).

    Attributes:
        tokens: the call keys (``"find[red]"``, ``"and"``, ...), token ``i`` is ``tokens[i]``.
        slot_types: the distinct types a slot can ask for: index 0 is ``output``, then each input type.
        max_arity: most inputs of any call.

    Raises:
        ConfigError: bad bounds, or no member at all (no call can produce ``output`` within the bounds).

    Example:
        >>> from modnets.models import nmn_library
        >>> from modnets.types import Probs
        >>> space = ProgramSpace.of(nmn_library(grid=(4, 4)), output=Probs(26), max_size=3, max_depth=3,
        ...                         modules=("find", "relate", "exist", "count"))
        >>> len(space.tokens), space.count()
        (19, 130)
        >>> p = Program.parse("count(relate[left](find[red]))")
        >>> space.decode(space.encode(p)) == p
        True
    """

    def __init__(
        self,
        signatures: Mapping[str, Signature],
        *,
        output: DataType,
        max_size: int,
        max_depth: int | None = None,
        arguments: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if not isinstance(output, DataType):
            raise ConfigError(f"ProgramSpace output must be a DataType, got {type(output).__name__}")
        if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
            raise ConfigError(f"ProgramSpace max_size must be an int >= 1, got {max_size!r}")
        if max_depth is not None and (not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < 1):
            raise ConfigError(f"ProgramSpace max_depth must be None or an int >= 1, got {max_depth!r}")
        arguments = dict(arguments or {})
        unknown = sorted(set(arguments) - set(signatures))
        if unknown:
            raise ConfigError(f"ProgramSpace arguments name modules without a signature: {unknown}")
        tokens: list[_Token] = []
        for name, sig in signatures.items():
            if not isinstance(sig, Signature):
                raise ConfigError(f"ProgramSpace signature of {name!r} must be a Signature, got {type(sig).__name__}")
            Program(name)  # a valid call name, or ProgramSyntaxError
            inputs = tuple(t for _, t in sig.inputs)
            values = arguments.get(name)
            if values is None:
                tokens.append(_Token(name, None, inputs, sig.output))
            else:
                tokens.extend(_Token(name, str(v), inputs, sig.output) for v in values)
        if not tokens:
            raise ConfigError("ProgramSpace needs at least one module, got none")
        self.output = output
        self.max_size = max_size
        self.max_depth = max_size if max_depth is None else min(max_depth, max_size)
        self._tokens = tuple(tokens)
        self.tokens: tuple[str, ...] = tuple(t.key for t in tokens)
        self._index = {t.key: i for i, t in enumerate(tokens)}
        types: dict[DataType, int] = {output: 0}
        for t in tokens:
            for ty in t.inputs:
                types.setdefault(ty, len(types))
        self.slot_types: tuple[DataType, ...] = tuple(types)
        self._type_index = types
        self.max_arity = max(len(t.inputs) for t in tokens)
        v, n_types, depth = len(tokens), len(types), self.max_depth
        # accepts[s, t]: slot type s takes the output of token t
        self.accepts = torch.tensor([[s.accepts(t.output) for t in tokens] for s in self.slot_types], dtype=torch.bool)
        self.arity = torch.tensor([len(t.inputs) for t in tokens], dtype=torch.long)  # (V,)
        # child_types[t, j]: slot type of input j of token t (0 where t has no input j)
        self.child_types = torch.zeros(v, max(self.max_arity, 1), dtype=torch.long)
        for i, t in enumerate(tokens):
            for j, ty in enumerate(t.inputs):
                self.child_types[i, j] = types[ty]
        # min_size[s, h]: fewest calls filling slot type s with height <= h; cost[h, t]: of token t's subtree
        self.min_size = torch.full((n_types, depth + 1), INFEASIBLE, dtype=torch.long)
        self.cost = torch.full((depth + 1, v), INFEASIBLE, dtype=torch.long)
        for h in range(1, depth + 1):
            below = self.min_size[:, h - 1]
            for i, t in enumerate(tokens):
                need = 1 + sum(int(below[types[ty]]) for ty in t.inputs)
                self.cost[h, i] = min(need, INFEASIBLE)
            cost = self.cost[h].expand(n_types, v)
            self.min_size[:, h] = torch.where(self.accepts, cost, INFEASIBLE).min(1).values.clamp_max(INFEASIBLE)
        if int(self.min_size[0, depth]) > max_size:
            raise ConfigError(
                f"ProgramSpace holds no program: no call produces a value {output} accepts within max_size="
                f"{max_size}, max_depth={self.max_depth} (modules: {', '.join(signatures)})"
            )

    @classmethod
    def of(
        cls,
        library,
        *,
        output: DataType,
        max_size: int,
        max_depth: int | None = None,
        modules: Sequence[str] | None = None,
    ) -> ProgramSpace:
        """The space of a :class:`~modnets.compose.Library`'s programs (every argument value a token).

        Args:
            library: the modules.
            output: the type the programs must produce.
            max_size: most calls in a program.
            max_depth: most calls on a root-to-leaf path (``None``: ``max_size``).
            modules: the module names the programs may call (default: all of them, in the library's order).

        Raises:
            UnknownNameError: ``modules`` names a module the library does not have.
        """
        names = library.names if modules is None else tuple(modules)
        for name in names:
            if name not in library:
                raise UnknownNameError(f"unknown module {name!r}; known modules: {', '.join(library.names)}")
        signatures = {n: library.signature(n) for n in names}
        arguments = {}
        for n in names:
            values = library[n].arguments  # a PerArgument's values, or a TypedModule's embedded ones
            if values is not None:
                arguments[n] = tuple(values)
        return cls(signatures, output=output, max_size=max_size, max_depth=max_depth, arguments=arguments)

    # ------------------------------------------------------------------ membership and coding
    def __len__(self) -> int:
        """The number of tokens (calls), V."""
        return len(self._tokens)

    def token(self, key: str) -> int:
        """The index of a call key (``"find[red]"``).

        Raises:
            UnknownNameError: a call the space does not hold.
        """
        try:
            return self._index[key]
        except KeyError:
            raise UnknownNameError(f"the program space has no call {key!r}; calls: {', '.join(self.tokens)}") from None

    def check(self, program: Program) -> None:
        """Raise unless ``program`` is a member of the space.

        Raises:
            UnknownNameError: a call the space does not hold.
            TypeMismatchError: a wrong number of inputs, an input or root type that does not fit, or a
                program larger or deeper than the bounds (the message says which).
        """
        if not isinstance(program, Program):
            raise TypeMismatchError(f"expected a Program, got {type(program).__name__}")
        if program.size > self.max_size or program.depth > self.max_depth:
            raise TypeMismatchError(
                f"program {_short(program)} has {program.size} calls on {program.depth} levels, outside the space's "
                f"bounds max_size={self.max_size}, max_depth={self.max_depth}"
            )
        out: dict[Program, DataType] = {}
        for call in program.unique_calls():
            tok = self._tokens[self.token(call.key)]
            if len(call.children) != len(tok.inputs):
                raise TypeMismatchError(f"'{call.key}' takes {len(tok.inputs)} input(s), got {len(call.children)} in "
                                        f"{_short(call)}")
            for j, (want, child) in enumerate(zip(tok.inputs, call.children, strict=True)):
                if not want.accepts(out[child]):
                    raise TypeMismatchError(f"input {j + 1} of '{call.key}' expects {want}, got {out[child]} from "
                                            f"'{child.key}' in {_short(call)}")
            out[call] = tok.output
        if not self.output.accepts(out[program]):
            raise TypeMismatchError(f"program {_short(program)} produces {out[program]}, but the space's programs must "
                                    f"produce {self.output}")

    def contains(self, program: Program) -> bool:
        """Whether ``program`` is a member of the space (see :meth:`check`)."""
        try:
            self.check(program)
        except (TypeMismatchError, UnknownNameError):
            return False
        return True

    def encode(self, program: Program) -> list[int]:
        """The token indices of a member's calls in prefix order (root first).

        Raises:
            UnknownNameError, TypeMismatchError: ``program`` is not a member (see :meth:`check`).
        """
        self.check(program)
        out: list[int] = []
        stack = [program]
        while stack:
            call = stack.pop()
            out.append(self._index[call.key])
            stack.extend(reversed(call.children))
        return out

    def decode(self, tokens: Sequence[int]) -> Program:
        """The program of a prefix-order token sequence (token ids; ``-1`` entries at the end are padding).

        Raises:
            ConfigError: an unknown id, or a sequence that does not form exactly one program.
        """
        ids = [int(t) for t in tokens]
        while ids and ids[-1] < 0:
            ids.pop()
        if not ids or any(not 0 <= t < len(self._tokens) for t in ids):
            raise ConfigError(f"a program's tokens must be ids in [0, {len(self._tokens)}), got {ids}")
        # Built from the end: each call takes its inputs from the stack of finished sub-programs.
        done: list[Program] = []
        for t in reversed(ids):
            tok = self._tokens[t]
            k = len(tok.inputs)
            if len(done) < k:
                raise ConfigError(f"tokens {ids} do not form a program: '{tok.key}' lacks inputs")
            kids = tuple(done[len(done) - k:][::-1])
            del done[len(done) - k:]
            done.append(Program(tok.name, tok.arg, kids))
        if len(done) != 1:
            raise ConfigError(f"tokens {ids} form {len(done)} programs, not one")
        return done[0]

    # ------------------------------------------------------------------ enumeration
    def programs(self) -> Iterator[Program]:
        """Every member, smallest first (then in token order), generated one at a time."""
        for size in range(1, self.max_size + 1):
            yield from self._programs(0, self.max_depth, size)

    def enumerate(self, limit: int | None = None) -> list[Program]:
        """Every member, smallest first (then in token order), or the first ``limit`` of them.

        The number of members grows exponentially with ``max_size``: count them first (:meth:`count`).
        """
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ConfigError(f"limit must be None or an int >= 0, got {limit!r}")
        return list(itertools.islice(self.programs(), limit))

    def count(self) -> int:
        """The number of members (computed without listing them)."""
        memo: dict[tuple[int, int, int], int] = {}

        def n(slot: int, height: int, size: int) -> int:
            key = (slot, height, size)
            if key not in memo:
                total = 0
                if height >= 1 and size >= 1:
                    for t in self._fitting(slot):
                        kids = [self._type_index[ty] for ty in self._tokens[t].inputs]
                        total += sum(_prod(n(c, height - 1, s) for c, s in zip(kids, split, strict=True))
                                     for split in _splits(size - 1, len(kids)))
                memo[key] = total
            return memo[key]

        return sum(n(0, self.max_depth, s) for s in range(1, self.max_size + 1))

    def _fitting(self, slot: int) -> list[int]:
        return self.accepts[slot].nonzero().flatten().tolist()

    def _programs(self, slot: int, height: int, size: int) -> Iterator[Program]:
        """Members filling a slot of type ``slot_types[slot]`` with exactly ``size`` calls, height <= ``height``."""
        if height < 1 or size < int(self.min_size[slot, height]):
            return
        for t in self._fitting(slot):
            tok = self._tokens[t]
            kids = [self._type_index[ty] for ty in tok.inputs]
            if not kids:
                if size == 1:
                    yield Program(tok.name, tok.arg)
                continue
            for split in _splits(size - 1, len(kids)):
                yield from (Program(tok.name, tok.arg, children)
                            for children in _product([list(self._programs(c, height - 1, s))
                                                      for c, s in zip(kids, split, strict=True)]))

    # ------------------------------------------------------------------ tables for decoders
    def tables(self, device: torch.device | str | None = None) -> dict[str, Tensor]:
        """The decoding tables on a device: ``accepts`` (types, V) bool, ``arity`` (V,), ``child_types``
        (V, max_arity), ``min_size`` (types, max_depth + 1), ``cost`` (max_depth + 1, V) (the fewest calls
        of a subtree rooted at each token within each height; :data:`INFEASIBLE` where impossible)."""
        names = ("accepts", "arity", "child_types", "min_size", "cost")
        return {n: getattr(self, n).to(device) for n in names}

    def __repr__(self) -> str:
        return (f"ProgramSpace({len(self.tokens)} calls, output={self.output}, max_size={self.max_size}, "
                f"max_depth={self.max_depth})")


def _short(program: Program, limit: int = 80) -> str:
    text = str(program)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _splits(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every way to write ``total`` as an ordered sum of ``parts`` integers >= 1."""
    if parts == 0:
        if total == 0:
            yield ()
        return
    if parts == 1:
        if total >= 1:
            yield (total,)
        return
    for first in range(1, total - parts + 2):
        for rest in _splits(total - first, parts - 1):
            yield (first, *rest)


def _product(lists: list[list[Program]]) -> Iterator[tuple[Program, ...]]:
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for tail in _product(lists[1:]):
            yield (head, *tail)


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out
