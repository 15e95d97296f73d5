"""CLEVR-like functional programs: random programs of an exact depth, their answers, their question text.

Vocabulary (the NMN module presets rely on it):

- ``find[v]``, ``v`` any colour, shape or size: the objects with that value (a leaf);
- ``relate[r](s)``, ``r`` in :data:`RELATIONS`: the objects left of / right of / above / below *some*
  object of ``s`` (``left``: ``o.x < t.x``, ``right``: ``o.x > t.x``, ``above``: ``o.y < t.y``,
  ``below``: ``o.y > t.y``; image rows grow downwards);
- ``and(s1, s2)``, ``or(s1, s2)``: intersection and union;
- at the root only: ``exist(s)`` -> yes / no, ``count(s)`` -> "0".."10", ``describe[a](s)`` -> the
  colour / shape / size of the single object of ``s``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from ..compose._program import Program
from ..errors import ConfigError, UnknownNameError
from ._clevr_scene import COLORS, SHAPES, SIZES, Scene

__all__ = [
    "RELATIONS",
    "ATTRIBUTES",
    "FIND_VALUES",
    "ANSWER_MODULES",
    "ANSWERS",
    "encode_answer",
    "execute",
    "program_to_question",
    "generate_program",
    "SceneProgramSampler",
    "Candidate",
]

RELATIONS = ("left", "right", "above", "below")
ATTRIBUTES = ("color", "shape", "size")
#: Every argument of ``find``, in this order.
FIND_VALUES = (*COLORS, *SHAPES, *SIZES)
#: The modules that may stand at the root and produce an answer.
ANSWER_MODULES = ("exist", "count", "describe")
#: Every answer, in a fixed order; answers are encoded as indices into this tuple.
ANSWERS = ("no", "yes", *(str(k) for k in range(11)), *COLORS, *SHAPES, *SIZES)

_ATTRIBUTE_VALUES = {"color": COLORS, "shape": SHAPES, "size": SIZES}
_ATTRIBUTE_OF = {v: a for a, values in _ATTRIBUTE_VALUES.items() for v in values}
_ANSWER_INDEX = {a: i for i, a in enumerate(ANSWERS)}
_ARGS: dict[str, tuple[str, ...] | None] = {
    "find": FIND_VALUES,
    "relate": RELATIONS,
    "and": None,
    "or": None,
    "exist": None,
    "count": None,
    "describe": ATTRIBUTES,
}
_ARITY = {"find": 0, "relate": 1, "and": 2, "or": 2, "exist": 1, "count": 1, "describe": 1}

# Generator knobs. Probabilities of the operation at an inner set node (the rest is `or`).
_P_RELATE = 0.4
_P_AND = 0.35
_P_PRESENT = 0.8  # a leaf names a value that selects some but not all objects
_P_DEEPER = 0.35  # the short input of and/or grows one level deeper with this probability
_RETRIES = 4  # attempts at a non-degenerate operation on top of a fixed deep input
_GOAL_RETRIES = 8  # attempts at an answer-module input that meets a goal
_GENERATE_TRIES = 200


def encode_answer(answer: str) -> int:
    """Index of ``answer`` in :data:`ANSWERS`.

    Raises:
        UnknownNameError: ``answer`` is not in :data:`ANSWERS`.
    """
    try:
        return _ANSWER_INDEX[answer]
    except (KeyError, TypeError):
        raise UnknownNameError(f"unknown answer {answer!r}; known answers: {', '.join(ANSWERS)}") from None


def _check_call(call: Program, *, at_root: bool) -> None:
    """Raise if ``call`` is not a well-formed call of the vocabulary at its position."""
    if call.name not in _ARGS:
        raise UnknownNameError(f"unknown module {call.name!r}; known modules: {', '.join(_ARGS)}")
    accepted = _ARGS[call.name]
    if accepted is None and call.arg is not None:
        raise ConfigError(f"{call.key}: module {call.name!r} takes no argument")
    if accepted is not None and call.arg not in accepted:
        raise UnknownNameError(f"{call.key}: unknown argument {call.arg!r}; accepted: {', '.join(accepted)}")
    if len(call.children) != _ARITY[call.name]:
        raise ConfigError(f"{call.key} takes {_ARITY[call.name]} inputs, got {len(call.children)}")
    if at_root != (call.name in ANSWER_MODULES):
        where = "at the root" if at_root else "below the root"
        raise ConfigError(
            f"{call.key} {where}: a program is one answer module ({', '.join(ANSWER_MODULES)}) "
            "on top of set modules (find, relate, and, or)"
        )


def execute(program: Program, scene: Scene) -> str:
    """Answer ``program`` on ``scene`` symbolically, with boolean vectors over the objects.

    Args:
        program: an answer module over set modules, e.g. ``count(relate[left](find[cube]))``.
        scene: the scene of ``n`` objects.

    Returns:
        The answer, one of :data:`ANSWERS`.

    Raises:
        UnknownNameError: an unknown module or argument.
        ConfigError: a malformed program (wrong number of inputs, answer module not at the root), or
            ``describe`` applied to a set that does not hold exactly one object.

    Example:
        >>> scene = Scene.from_objects([
        ...     {"color": "red", "shape": "cube", "size": "small", "x": 0.2, "y": 0.5},
        ...     {"color": "blue", "shape": "sphere", "size": "large", "x": 0.7, "y": 0.5}])
        >>> execute(Program.parse("describe[color](relate[left](find[sphere]))"), scene)
        'red'
    """
    columns = {"color": scene.color, "shape": scene.shape, "size": scene.size}
    stack: list[np.ndarray] = []  # (n,) bool sets, one per finished call
    for call in program.postorder():
        is_root = call is program
        _check_call(call, at_root=is_root)
        if is_root:
            break
        if call.name == "find":
            attr = _ATTRIBUTE_OF[call.arg]
            stack.append(columns[attr] == _ATTRIBUTE_VALUES[attr].index(call.arg))
        elif call.name == "relate":
            s = stack.pop()
            if not s.any():
                stack.append(np.zeros(scene.n_objects, dtype=bool))
            elif call.arg == "left":
                stack.append(scene.x < scene.x[s].max())
            elif call.arg == "right":
                stack.append(scene.x > scene.x[s].min())
            elif call.arg == "above":
                stack.append(scene.y < scene.y[s].max())
            else:
                stack.append(scene.y > scene.y[s].min())
        else:
            b, a = stack.pop(), stack.pop()
            stack.append(a & b if call.name == "and" else a | b)
    (s,) = stack
    if program.name == "exist":
        return "yes" if s.any() else "no"
    if program.name == "count":
        return str(int(s.sum()))
    if int(s.sum()) != 1:
        raise ConfigError(
            f"{program.key} needs exactly one object, but its input set holds {int(s.sum())} in this scene"
        )
    attr = program.arg
    return _ATTRIBUTE_VALUES[attr][int(columns[attr][s][0])]


# ---------------------------------------------------------------------------------------- question text
_RELATION_TEXT = {"left": "left of", "right": "right of", "above": "above", "below": "below"}


def _noun(call: Program) -> tuple[str, str]:
    """Singular and plural noun phrase of a set call (without article)."""
    if call.name == "find":
        if _ATTRIBUTE_OF[call.arg] == "shape":
            return call.arg, call.arg + "s"
        return f"{call.arg} thing", f"{call.arg} things"
    if call.name == "relate":
        inner = _noun(call.children[0])[0]
        rel = _RELATION_TEXT[call.arg]
        return f"thing {rel} a {inner}", f"things {rel} a {inner}"
    if call.name == "and":
        one, many = _noun(call.children[0])
        pred = _predicate(call.children[1])
        return f"{one} that is {pred}", f"{many} that are {pred}"
    first, second = (_noun(c)[0] for c in call.children)
    return f"thing that is either a {first} or a {second}", f"things that are either a {first} or a {second}"


def _predicate(call: Program) -> str:
    """What follows "that is" for a set call: "red", "a cube", "left of a sphere", ..."""
    if call.name == "find":
        return f"a {call.arg}" if _ATTRIBUTE_OF[call.arg] == "shape" else call.arg
    if call.name == "relate":
        return f"{_RELATION_TEXT[call.arg]} a {_noun(call.children[0])[0]}"
    if call.name == "and":
        return f"{_predicate(call.children[0])} and {_predicate(call.children[1])}"
    first, second = (_noun(c)[0] for c in call.children)
    return f"either a {first} or a {second}"


def program_to_question(program: Program) -> str:
    """Deterministic English question for a program; every call of the program shows in the text.

    Raises:
        UnknownNameError, ConfigError: as :func:`execute`, for a program outside the vocabulary.

    Example:
        >>> program_to_question(Program.parse("exist(and(find[red], relate[left](find[cube])))"))
        'is there a red thing that is left of a cube?'
    """
    for call in program.postorder():
        _check_call(call, at_root=call is program)
    one, many = _noun(program.children[0])
    if program.name == "exist":
        return f"is there a {one}?"
    if program.name == "count":
        return f"how many {many} are there?"
    return f"what {program.arg} is the {one}?"


# ---------------------------------------------------------------------------------------- generation
class _Node(NamedTuple):
    """A program call during generation, with the set it selects as a bit mask (bit i = object i)."""

    name: str
    arg: str | None
    children: tuple[_Node, ...]
    bits: int


class Candidate(NamedTuple):
    """A generated question: the program tree (internal form) and its answer on the scene."""

    node: _Node
    answer: str

    def program(self) -> Program:
        """The candidate as a :class:`Program`."""
        return _to_program(self.node)


_LEAF_PROGRAMS = {v: Program("find", v) for v in FIND_VALUES}


def _to_program(node: _Node) -> Program:
    if node.name == "find":
        return _LEAF_PROGRAMS[node.arg]
    return Program(node.name, node.arg, tuple(_to_program(c) for c in node.children))


def _determines(node: _Node, attr: str) -> bool:
    """Whether the program text alone fixes ``attr`` of every object of the set (a trivial describe)."""
    if node.name == "find":
        return _ATTRIBUTE_OF[node.arg] == attr
    if node.name == "and":
        return _determines(node.children[0], attr) or _determines(node.children[1], attr)
    if node.name == "or":
        return _determines(node.children[0], attr) and _determines(node.children[1], attr)
    return False


class SceneProgramSampler:
    """Draws random programs for one scene, executing them while they grow.

    Sets are Python ints used as bit masks over the scene's objects, so a candidate costs microseconds.

    A set sub-program of depth ``d >= 2`` is an operation on top of a sub-program of depth ``d - 1``:
    ``relate[r]`` of it, or ``and`` / ``or`` of it with a shorter random sub-program (depth ``1..d-2``,
    mostly 1), in random order. Intermediate sets that are empty, hold every object, or where an
    ``and`` / ``or`` equals one of its inputs are redrawn a few times (only the operation and its short
    input, so the cost stays linear in the depth); the set fed to the answer module may be empty or full
    (``exist`` needs "no" answers) but not a redundant ``and`` / ``or``.

    Args:
        scene: the scene.
        rng: the random generator (consumed).
    """

    def __init__(self, scene: Scene, rng: np.random.Generator):
        self.scene = scene
        self._rng = rng
        self._uniforms: Iterator[float] = iter(())
        n = scene.n_objects
        self.full = (1 << n) - 1
        self._values = {
            "color": [COLORS[i] for i in scene.color.tolist()],
            "shape": [SHAPES[i] for i in scene.shape.tolist()],
            "size": [SIZES[i] for i in scene.size.tolist()],
        }
        bits = dict.fromkeys(FIND_VALUES, 0)
        for attr_values in self._values.values():
            for i, v in enumerate(attr_values):
                bits[v] |= 1 << i
        self._leaves = [_Node("find", v, (), bits[v]) for v in FIND_VALUES]
        self._good_leaves = [leaf for leaf in self._leaves if 0 < leaf.bits < self.full]
        # relate[r](s) is decided by one object of s: for `left`, the rightmost one (everything left of it
        # is left of some object of s). Per relation: the order in which to look for that object, and for
        # each object the set it relates to.
        x, y = scene.x.tolist(), scene.y.tolist()
        self._relate = {
            "left": self._relation(x, descending=True),
            "right": self._relation(x, descending=False),
            "above": self._relation(y, descending=True),
            "below": self._relation(y, descending=False),
        }

    @staticmethod
    def _relation(coord: list[float], *, descending: bool) -> tuple[list[int], list[int]]:
        """Scan order and, per object ``t``, the objects strictly below (``descending``) or above ``t``."""
        scan = sorted(range(len(coord)), key=coord.__getitem__, reverse=descending)
        masks = [0] * len(coord)
        acc, prev = 0, None
        for t in reversed(scan):  # from the far end: accumulate the objects passed so far
            masks[t] = masks[prev] if prev is not None and coord[t] == coord[prev] else acc
            acc |= 1 << t
            prev = t
        return scan, masks

    def _relate_bits(self, rel: str, bits: int) -> int:
        scan, masks = self._relate[rel]
        for t in scan:
            if bits >> t & 1:
                return masks[t]
        return 0

    def object_values(self, attr: str) -> list[str]:
        """The value of ``attr`` of each object, e.g. ``["red", "blue"]`` for ``"color"``."""
        return self._values[attr]

    def _random(self) -> float:
        # Uniforms drawn in blocks: one Generator call per scalar would dominate the cost.
        for u in self._uniforms:
            return u
        self._uniforms = iter(self._rng.random(256).tolist())
        return next(self._uniforms)

    def choice(self, items: Sequence):
        """A uniformly random element of ``items``."""
        return items[int(self._random() * len(items))]

    def _leaf(self) -> _Node:
        if self._good_leaves and self._random() < _P_PRESENT:
            return self.choice(self._good_leaves)
        return self.choice(self._leaves)

    def _degenerate(self, node: _Node, top: bool) -> bool:
        if not top and (node.bits == 0 or node.bits == self.full):
            return True
        return node.name in ("and", "or") and node.bits in (node.children[0].bits, node.children[1].bits)

    def _operation(self, deep: _Node, depth: int) -> _Node:
        """A random operation of depth ``depth`` on top of ``deep`` (depth ``depth - 1``)."""
        u = self._random()
        if u < _P_RELATE:
            rel = self.choice(RELATIONS)
            return _Node("relate", rel, (deep,), self._relate_bits(rel, deep.bits))
        short_depth = 1
        while short_depth < depth - 2 and self._random() < _P_DEEPER:
            short_depth += 1
        short = self.grow(short_depth)
        if short.bits == deep.bits and short == deep:  # `and(x, x)` says nothing: relate instead
            rel = self.choice(RELATIONS)
            return _Node("relate", rel, (deep,), self._relate_bits(rel, deep.bits))
        pair = (deep, short) if self._random() < 0.5 else (short, deep)
        if u < _P_RELATE + _P_AND:
            return _Node("and", None, pair, deep.bits & short.bits)
        return _Node("or", None, pair, deep.bits | short.bits)

    def grow(self, depth: int, *, top: bool = False, goal: Callable[[_Node], bool] | None = None) -> _Node:
        """A set sub-program of exactly ``depth`` calls on its longest path.

        Args:
            depth: at least 1.
            top: the sub-program feeds the answer module (empty and full sets allowed).
            goal: a wish on the sub-program (e.g. "selects exactly 3 objects"): its last operation is
                redrawn up to a few times to meet it; the result may still miss it.
        """
        if depth == 1:
            if goal is not None:
                fits = [leaf for leaf in self._leaves if goal(leaf)]
                if fits:
                    return self.choice(fits)
            return self._leaf()
        deep = self.grow(depth - 1)
        node = deep
        for _ in range(_RETRIES if goal is None else _GOAL_RETRIES):
            node = self._operation(deep, depth)
            if not self._degenerate(node, top) and (goal is None or goal(node)):
                break
        return node

    def answer(self, kind: str, attr: str | None, child: _Node) -> str | None:
        """The answer of ``kind[attr](child)``, or ``None`` for an ill-posed or trivial ``describe``."""
        bits = child.bits
        if kind == "exist":
            return "yes" if bits else "no"
        if kind == "count":
            return str(bits.bit_count())
        if bits == 0 or bits & (bits - 1) or _determines(child, attr):
            return None
        return self._values[attr][bits.bit_length() - 1]

    def goal(self, kind: str, attr: str | None = None, answer: str | None = None) -> Callable[[_Node], bool]:
        """The wish on the answer module's input set for a ``kind[attr]`` question with this ``answer``.

        ``answer=None`` asks for any well-posed question (only ``describe`` has ill-posed ones).
        """
        if kind == "describe":
            values = self._values[attr]
            if answer is None:
                return lambda n: n.bits.bit_count() == 1 and not _determines(n, attr)
            return lambda n: (
                n.bits.bit_count() == 1
                and values[n.bits.bit_length() - 1] == answer
                and not _determines(n, attr)
            )
        if answer is None:
            return lambda n: True
        if kind == "exist":
            return (lambda n: n.bits != 0) if answer == "yes" else (lambda n: n.bits == 0)
        k = int(answer)
        return lambda n: n.bits.bit_count() == k

    def candidate(
        self, depth: int, kind: str, attr: str | None = None, answer: str | None = None
    ) -> Candidate | None:
        """One random question of exactly ``depth`` calls with root ``kind[attr]``, or ``None``.

        Args:
            depth: at least 2.
            kind: one of :data:`ANSWER_MODULES`.
            attr: the attribute of ``describe``.
            answer: the answer to aim at (see :meth:`grow`'s ``goal``); the candidate may miss it.

        Returns:
            The candidate, or ``None`` when the drawn set does not suit a ``describe`` (not exactly one
            object, or the program names the described attribute).
        """
        child = self.grow(depth - 1, top=True, goal=self.goal(kind, attr, answer))
        result = self.answer(kind, attr, child)
        if result is None:
            return None
        return Candidate(_Node(kind, attr, (child,), 0), result)


def generate_program(
    rng: np.random.Generator,
    scene: Scene,
    depth: int,
    *,
    kind: str | None = None,
    attr: str | None = None,
) -> Program:
    """A random answerable program of exactly ``depth`` calls (``Program.depth``) for ``scene``.

    Args:
        rng: random generator (consumed).
        scene: the scene the program must be answerable on (``describe`` sees exactly one object).
        depth: tree depth, root included (``exist(find[red])`` has depth 2); at least 2.
        kind: root module, one of :data:`ANSWER_MODULES`; random when ``None``.
        attr: attribute of ``describe``, one of :data:`ATTRIBUTES`; random when ``None``.

    Returns:
        The program; its answer is ``execute(program, scene)``.

    Raises:
        ConfigError: ``depth`` below 2, a bad ``kind`` / ``attr``, or a ``describe`` that this scene
            cannot pose (no single-object set found).
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 2:
        raise ConfigError(f"depth must be an integer >= 2 (an answer module over a find), got {depth!r}")
    if kind is not None and kind not in ANSWER_MODULES:
        raise ConfigError(f"kind={kind!r}; accepted: {', '.join(ANSWER_MODULES)} or None")
    if attr is not None and attr not in ATTRIBUTES:
        raise ConfigError(f"attr={attr!r}; accepted: {', '.join(ATTRIBUTES)} or None")
    sampler = SceneProgramSampler(scene, rng)
    for _ in range(_GENERATE_TRIES):
        k = kind if kind is not None else ANSWER_MODULES[int(rng.integers(len(ANSWER_MODULES)))]
        a = None if k != "describe" else (attr if attr is not None else ATTRIBUTES[int(rng.integers(3))])
        cand = sampler.candidate(depth, k, a)
        if cand is not None:
            return cand.program()
    if kind == "describe":
        raise ConfigError(
            f"found no describe question of depth {depth} for this scene in {_GENERATE_TRIES} tries"
        )
    return sampler.candidate(depth, "count").program()
