"""Programs (layouts): trees of module calls, their text form and the CLEVR-style node list."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ProgramSyntaxError

__all__ = ["Program"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ARG = re.compile(r"[A-Za-z0-9_.+\-]+")


@dataclass(frozen=True, eq=False)
class Program:
    """One module call and the calls that feed it: ``name[arg](child, child, ...)``.

    A program is its root call. Programs are immutable and hashable, so identical sub-programs can be
    recognised and shared.

    Attributes:
        name: module name, e.g. ``"find"``.
        arg: the call's argument (``"red"`` in ``find[red]``) or ``None``.
        children: the calls whose outputs are this call's inputs, in argument order.
        depth: number of calls on the longest root-to-leaf path (a single call has depth 1).
        size: number of calls in the tree.

    Example:
        >>> p = Program.parse("exist(and(find[red], relate[left](find[circle])))")
        >>> p.depth, p.size
        (4, 5)
        >>> str(p.children[0].children[1])
        'relate[left](find[circle])'
    """

    name: str
    arg: str | None = None
    children: tuple[Program, ...] = ()
    depth: int = field(init=False, compare=False, repr=False)
    size: int = field(init=False, compare=False, repr=False)
    _hash: int = field(init=False, compare=False, repr=False)
    _unique: tuple[Program, ...] | None = field(init=False, default=None, compare=False, repr=False)
    _structure: tuple[tuple[Program, tuple[int, ...]], ...] | None = field(
        init=False, default=None, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ProgramSyntaxError(f"invalid module name {self.name!r}", text=str(self.name), position=0)
        if self.arg is not None and (not isinstance(self.arg, str) or not _ARG.fullmatch(self.arg)):
            raise ProgramSyntaxError(f"invalid argument {self.arg!r}", text=str(self.arg), position=0)
        children = tuple(self.children)
        if not all(isinstance(c, Program) for c in children):
            raise TypeError("Program children must be Program instances")
        object.__setattr__(self, "children", children)
        object.__setattr__(self, "depth", 1 + max((c.depth for c in children), default=0))
        object.__setattr__(self, "size", 1 + sum(c.size for c in children))
        # Cached so that hashing a deep program is O(1), not a walk of the whole tree.
        object.__setattr__(self, "_hash", hash((self.name, self.arg, tuple(c._hash for c in children))))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Program) or self._hash != other._hash:
            return False
        return self.name == other.name and self.arg == other.arg and self.children == other.children

    # ------------------------------------------------------------------ text form
    @classmethod
    def parse(cls, text: str) -> Program:
        """Parse the text form, e.g. ``describe[color](and(find[red], relate[left](find[circle])))``.

        Whitespace between tokens is ignored; ``f()`` and ``f`` are the same zero-input call.

        Raises:
            ProgramSyntaxError: with the 0-based position of the first problem.
        """
        if not isinstance(text, str):
            raise ProgramSyntaxError(f"program text must be a str, got {type(text).__name__}", text="", position=0)
        pos = 0
        n = len(text)
        # Each open frame: [name, arg, children list]. Iterative so that deep programs cannot hit
        # Python's recursion limit.
        stack: list[tuple[str, str | None, list[Program]]] = []

        def skip_ws(i: int) -> int:
            while i < n and text[i].isspace():
                i += 1
            return i

        def fail(msg: str, i: int) -> ProgramSyntaxError:
            return ProgramSyntaxError(msg, text=text, position=min(i, n))

        result: Program | None = None
        pos = skip_ws(pos)
        if pos >= n:
            raise fail("empty program", pos)
        while True:
            # Expect a call.
            m = _NAME.match(text, pos)
            if not m:
                what = repr(text[pos]) if pos < n else "end of text"
                raise fail(f"expected a module name, found {what}", pos)
            name = m.group()
            pos = skip_ws(m.end())
            arg = None
            if pos < n and text[pos] == "[":
                a = _ARG.match(text, skip_ws(pos + 1))
                if not a:
                    raise fail("expected an argument after '['", skip_ws(pos + 1))
                arg = a.group()
                pos = skip_ws(a.end())
                if pos >= n or text[pos] != "]":
                    raise fail("expected ']' to close the argument", pos)
                pos = skip_ws(pos + 1)
            if pos < n and text[pos] == "(":
                pos = skip_ws(pos + 1)
                if pos < n and text[pos] == ")":
                    node = cls(name, arg)
                    pos = skip_ws(pos + 1)
                else:
                    stack.append((name, arg, []))
                    continue  # parse the first child
            else:
                node = cls(name, arg)
            # A call is complete: attach it and close as many frames as the text closes.
            while True:
                if not stack:
                    result = node
                    break
                stack[-1][2].append(node)
                if pos < n and text[pos] == ",":
                    pos = skip_ws(pos + 1)
                    break  # parse the next sibling
                if pos < n and text[pos] == ")":
                    fname, farg, kids = stack.pop()
                    node = cls(fname, farg, tuple(kids))
                    pos = skip_ws(pos + 1)
                    continue
                what = repr(text[pos]) if pos < n else "end of text"
                raise fail(f"expected ',' or ')', found {what}", pos)
            if result is not None:
                break
        if pos != n:
            raise fail(f"unexpected {text[pos]!r} after the end of the program", pos)
        return result

    def __str__(self) -> str:
        head = self.name if self.arg is None else f"{self.name}[{self.arg}]"
        if not self.children:
            return head
        return f"{head}({', '.join(str(c) for c in self.children)})"

    # ------------------------------------------------------------------ node-list form
    @classmethod
    def from_nodes(cls, nodes: Sequence[Mapping]) -> Program:
        """Build a program from a CLEVR-style node list.

        Each node is a mapping with ``"function"`` (module name), optional ``"value_inputs"`` (a list
        with at most one argument) and ``"inputs"`` (indices of earlier nodes). The last node is the root.

        Raises:
            ProgramSyntaxError: a malformed node; ``position`` is the node's index.
        """
        if not isinstance(nodes, Sequence) or isinstance(nodes, str) or len(nodes) == 0:
            raise ProgramSyntaxError("a node list must be a non-empty list of nodes", text="", position=0)
        built: list[Program] = []
        for i, node in enumerate(nodes):
            where = f"node {i}"
            if not isinstance(node, Mapping) or "function" not in node:
                raise ProgramSyntaxError(f"{where} must be a mapping with a 'function' key", text="", position=i)
            values = node.get("value_inputs", [])
            if not isinstance(values, Sequence) or isinstance(values, str) or len(values) > 1:
                raise ProgramSyntaxError(
                    f"{where}: 'value_inputs' must be a list of at most one argument, got {values!r}",
                    text="",
                    position=i,
                )
            inputs = node.get("inputs", [])
            if not isinstance(inputs, Sequence) or isinstance(inputs, str):
                raise ProgramSyntaxError(f"{where}: 'inputs' must be a list of node indices", text="", position=i)
            kids = []
            for j in inputs:
                if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < i:
                    raise ProgramSyntaxError(
                        f"{where}: input {j!r} must be the index of an earlier node (0..{i - 1})",
                        text="",
                        position=i,
                    )
                kids.append(built[j])
            try:
                built.append(cls(str(node["function"]), str(values[0]) if values else None, tuple(kids)))
            except ProgramSyntaxError as e:
                raise ProgramSyntaxError(f"{where}: {e.args[0].splitlines()[0]}", text="", position=i) from None
        return built[-1]

    def to_nodes(self) -> list[dict]:
        """The CLEVR-style node list (post-order, root last); identical sub-trees are listed once."""
        nodes: list[dict] = []
        index: dict[Program, int] = {}
        for call in self.postorder():
            if call in index:
                continue
            index[call] = len(nodes)
            nodes.append(
                {
                    "function": call.name,
                    "value_inputs": [] if call.arg is None else [call.arg],
                    "inputs": [index[c] for c in call.children],
                }
            )
        return nodes

    # ------------------------------------------------------------------ traversal
    def postorder(self) -> Iterator[Program]:
        """Every call, children before parents (left to right); without recursion."""
        stack: list[tuple[Program, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                yield node
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(node.children))

    def unique_calls(self) -> tuple[Program, ...]:
        """Every distinct call (identical sub-programs once), children before parents; cached."""
        if self._unique is None:
            seen: dict[Program, None] = {}
            for call in self.postorder():
                seen.setdefault(call, None)
            object.__setattr__(self, "_unique", tuple(seen))
        return self._unique

    def structure(self) -> tuple[tuple[Program, tuple[int, ...]], ...]:
        """:meth:`unique_calls` with, for each call, the positions of its inputs in that tuple; cached.

        The root is last. Lets executors wire a program with list indexing instead of hashing calls.
        """
        if self._structure is None:
            calls = self.unique_calls()
            position = {call: i for i, call in enumerate(calls)}
            object.__setattr__(
                self, "_structure", tuple((c, tuple(position[k] for k in c.children)) for c in calls)
            )
        return self._structure

    @property
    def key(self) -> str:
        """``name`` or ``name[arg]``: the call without its inputs."""
        return self.name if self.arg is None else f"{self.name}[{self.arg}]"
