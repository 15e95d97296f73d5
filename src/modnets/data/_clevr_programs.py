"""CLEVR-like functional programs: the module vocabulary, the oracle that answers a program on a scene, and
the program's question text.

Vocabulary (the NMN module presets rely on it). Set modules map sets of objects to sets of objects:

- ``find[v]``, ``v`` any colour, shape or size: the objects with that value (a leaf);
- ``relate[r](s)``, ``r`` in :data:`RELATIONS`: the objects left of / right of / above / below *some*
  object of ``s`` (``left``: ``o.x < t.x``, ``right``: ``o.x > t.x``, ``above``: ``o.y < t.y``,
  ``below``: ``o.y > t.y``; image rows grow downwards). When ``s`` is one object, as in every hop of the
  ``chains`` and ``clevr`` families (see :data:`PROGRAM_FAMILIES`), these are the objects in relation to
  that object;
- ``same[a](s)``, ``a`` in :data:`ATTRIBUTES`: the objects other than the single object of ``s`` that
  share its colour / shape / size (CLEVR's ``same_color`` ...); ``s`` must hold exactly one object;
- ``and(s1, s2)``, ``or(s1, s2)``: intersection and union (``and(find[v], s)`` filters ``s`` by ``v``).

Answer modules stand at the root only:

- ``exist(s)`` -> yes / no; ``count(s)`` -> "0".."10";
- ``describe[a](s)`` -> the colour / shape / size of the single object of ``s``;
- ``equal[a](s1, s2)`` -> yes / no: whether the single objects of ``s1`` and ``s2`` share their colour /
  shape / size (CLEVR's ``equal_color`` ...);
- ``compare[c](s1, s2)``, ``c`` in :data:`COMPARISONS`: yes / no: whether ``s1`` holds as many objects
  as ``s2`` (``equal``), more (``more``) or fewer (``fewer``) (CLEVR's ``equal_integer``,
  ``greater_than``, ``less_than`` over two counts).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from ..compose._program import Program
from ..errors import ConfigError, UnknownNameError
from ._clevr_scene import COLORS, SHAPES, SIZES, Scene

__all__ = [
    "RELATIONS",
    "ATTRIBUTES",
    "COMPARISONS",
    "FIND_VALUES",
    "ANSWER_MODULES",
    "ROOT_MODULES",
    "ANSWERS",
    "ATTRIBUTE_OF",
    "ATTRIBUTE_VALUES",
    "encode_answer",
    "execute",
    "select",
    "program_to_question",
    "Node",
    "Candidate",
    "determines",
    "compares",
    "Uniforms",
]

RELATIONS = ("left", "right", "above", "below")
ATTRIBUTES = ("color", "shape", "size")
#: The arguments of ``compare``: ``s1`` holds as many / more / fewer objects than ``s2``.
COMPARISONS = ("equal", "more", "fewer")
#: Every argument of ``find``, in this order.
FIND_VALUES = (*COLORS, *SHAPES, *SIZES)
#: The answer modules of the ``sets`` program family (the default of :func:`make_clevr_like`).
ANSWER_MODULES = ("exist", "count", "describe")
#: Every module that may stand at the root and produce an answer, in any program family.
ROOT_MODULES = (*ANSWER_MODULES, "equal", "compare")
#: Every answer, in a fixed order; answers are encoded as indices into this tuple.
ANSWERS = ("no", "yes", *(str(k) for k in range(11)), *COLORS, *SHAPES, *SIZES)

#: attribute -> its values; value -> its attribute.
ATTRIBUTE_VALUES = {"color": COLORS, "shape": SHAPES, "size": SIZES}
ATTRIBUTE_OF = {v: a for a, values in ATTRIBUTE_VALUES.items() for v in values}
_ANSWER_INDEX = {a: i for i, a in enumerate(ANSWERS)}
_ARGS: dict[str, tuple[str, ...] | None] = {
    "find": FIND_VALUES,
    "relate": RELATIONS,
    "same": ATTRIBUTES,
    "and": None,
    "or": None,
    "exist": None,
    "count": None,
    "describe": ATTRIBUTES,
    "equal": ATTRIBUTES,
    "compare": COMPARISONS,
}
_ARITY = {
    "find": 0, "relate": 1, "same": 1, "and": 2, "or": 2,
    "exist": 1, "count": 1, "describe": 1, "equal": 2, "compare": 2,
}
#: Program family -> its root modules. ``sets``: random set algebra (``find``, ``relate``, ``and``, ``or``)
#: under ``exist`` / ``count`` / ``describe``; its deep programs are long chains of set operations whose
#: sets grow large and easy, so depth says little about difficulty. ``chains``: CLEVR-style reasoning
#: chains under the same three roots, where every ``relate`` hop starts from exactly one object and
#: ``and(find[v], s)`` filters pick the next one among distractors; every level is one step of reasoning
#: that the answer depends on, so error compounds with depth. ``clevr``: ``chains`` with CLEVR's other
#: reasoning steps too: ``same[a]`` hops, and ``equal`` / ``compare`` over two chains at the root.
PROGRAM_FAMILIES: dict[str, tuple[str, ...]] = {
    "sets": ANSWER_MODULES,
    "chains": ANSWER_MODULES,
    "clevr": ROOT_MODULES,
}


def object_values(scene: Scene) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Each object's colour, shape and size names, and for every ``find`` value the bit set (bit ``i``: object
    ``i``) of the objects that have it: what the program samplers build their sets from.

    Returns:
        ``values``: attribute -> one name per object; ``bits``: find value -> int bit set.
    """
    values = {
        "color": [COLORS[i] for i in scene.color.tolist()],
        "shape": [SHAPES[i] for i in scene.shape.tolist()],
        "size": [SIZES[i] for i in scene.size.tolist()],
    }
    bits = dict.fromkeys(FIND_VALUES, 0)
    for names in values.values():
        for i, v in enumerate(names):
            bits[v] |= 1 << i
    return values, bits


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
    if at_root != (call.name in ROOT_MODULES):
        where = "at the root" if at_root else "below the root"
        raise ConfigError(
            f"{call.key} {where}: a program is one answer module ({', '.join(ROOT_MODULES)}) "
            "on top of set modules (find, relate, same, and, or)"
        )


def _the_object(call: Program, s: np.ndarray) -> int:
    """The index of the single object of ``s: (n,) bool``, the input of ``call``.

    Raises:
        ConfigError: ``s`` does not hold exactly one object.
    """
    found = np.flatnonzero(s)
    if len(found) != 1:
        raise ConfigError(
            f"{call.key} needs exactly one object, but its input set holds {len(found)} in this scene"
        )
    return int(found[0])


def compares(comparison: str, first: int, second: int) -> bool:
    """Whether ``first`` objects are as many as (``equal``), more than or fewer than ``second``."""
    if comparison == "equal":
        return first == second
    return first > second if comparison == "more" else first < second


def _apply(call: Program, inputs: list[np.ndarray], scene: Scene) -> np.ndarray:
    """The ``(n,)`` bool set of a set call, from the sets of its inputs."""
    columns = {"color": scene.color, "shape": scene.shape, "size": scene.size}
    if call.name == "find":
        attr = ATTRIBUTE_OF[call.arg]
        return columns[attr] == ATTRIBUTE_VALUES[attr].index(call.arg)
    if call.name == "relate":
        (s,) = inputs
        if not s.any():
            return np.zeros(scene.n_objects, dtype=bool)
        if call.arg == "left":
            return scene.x < scene.x[s].max()
        if call.arg == "right":
            return scene.x > scene.x[s].min()
        if call.arg == "above":
            return scene.y < scene.y[s].max()
        return scene.y > scene.y[s].min()
    if call.name == "same":
        i = _the_object(call, inputs[0])
        column = columns[call.arg]
        others = column == column[i]
        others[i] = False
        return others
    a, b = inputs
    return a & b if call.name == "and" else a | b


def _input_sets(program: Program, scene: Scene, *, answer: bool) -> list[np.ndarray]:
    """The sets of the root's inputs (``answer``: the root is an answer module), or of the root itself."""
    stack: list[np.ndarray] = []  # (n,) bool sets, one per finished call
    for call in program.postorder():
        is_root = call is program
        _check_call(call, at_root=answer and is_root)
        if answer and is_root:
            break
        arity = _ARITY[call.name]
        inputs = stack[len(stack) - arity :]
        del stack[len(stack) - arity :]
        stack.append(_apply(call, inputs, scene))
    return stack


def select(program: Program, scene: Scene) -> np.ndarray:
    """The objects a set program selects on ``scene`` (what the NMN's attention masks stand for).

    Args:
        program: set modules only, e.g. ``and(find[cube], relate[left](find[red]))``.
        scene: the scene of ``n`` objects.

    Returns:
        ``(n,)`` bool, object ``i`` selected or not.

    Raises:
        UnknownNameError, ConfigError: as :func:`execute` (an answer module anywhere is malformed).

    Example:
        >>> scene = Scene.from_objects([
        ...     {"color": "red", "shape": "cube", "size": "small", "x": 0.2, "y": 0.5},
        ...     {"color": "blue", "shape": "sphere", "size": "large", "x": 0.7, "y": 0.5}])
        >>> select(Program.parse("relate[right](find[red])"), scene).tolist()
        [False, True]
    """
    (s,) = _input_sets(program, scene, answer=False)
    return s


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
            ``describe``, ``same`` or ``equal`` applied to a set that does not hold exactly one object.

    Example:
        >>> scene = Scene.from_objects([
        ...     {"color": "red", "shape": "cube", "size": "small", "x": 0.2, "y": 0.5},
        ...     {"color": "blue", "shape": "sphere", "size": "large", "x": 0.7, "y": 0.5}])
        >>> execute(Program.parse("describe[color](relate[left](find[sphere]))"), scene)
        'red'
        >>> execute(Program.parse("compare[more](find[small], same[size](find[sphere]))"), scene)
        'yes'
    """
    inputs = _input_sets(program, scene, answer=True)
    if program.name == "exist":
        return "yes" if inputs[0].any() else "no"
    if program.name == "count":
        return str(int(inputs[0].sum()))
    if program.name == "compare":
        return "yes" if compares(program.arg, int(inputs[0].sum()), int(inputs[1].sum())) else "no"
    column = {"color": scene.color, "shape": scene.shape, "size": scene.size}[program.arg]
    if program.name == "equal":
        a, b = (_the_object(program, s) for s in inputs)
        return "yes" if column[a] == column[b] else "no"
    return ATTRIBUTE_VALUES[program.arg][int(column[_the_object(program, inputs[0])])]


# ---------------------------------------------------------------------------------------- question text
_RELATION_TEXT = {"left": "left of", "right": "right of", "above": "above", "below": "below"}


def _noun(call: Program) -> tuple[str, str]:
    """Singular and plural noun phrase of a set call (without article)."""
    if call.name == "find":
        if ATTRIBUTE_OF[call.arg] == "shape":
            return call.arg, call.arg + "s"
        return f"{call.arg} thing", f"{call.arg} things"
    if call.name in ("relate", "same"):
        pred = _predicate(call)
        return f"thing {pred}", f"things {pred}"
    if call.name == "and":
        one, many = _noun(call.children[0])
        pred = _predicate(call.children[1])
        return f"{one} that is {pred}", f"{many} that are {pred}"
    first, second = (_noun(c)[0] for c in call.children)
    return f"thing that is either a {first} or a {second}", f"things that are either a {first} or a {second}"


def _predicate(call: Program) -> str:
    """What follows "that is" for a set call: "red", "a cube", "left of a sphere", ..."""
    if call.name == "find":
        return f"a {call.arg}" if ATTRIBUTE_OF[call.arg] == "shape" else call.arg
    if call.name == "relate":
        return f"{_RELATION_TEXT[call.arg]} a {_noun(call.children[0])[0]}"
    if call.name == "same":
        return f"of the same {call.arg} as the {_noun(call.children[0])[0]}"
    if call.name == "and":
        return f"{_predicate(call.children[0])} and {_predicate(call.children[1])}"
    first, second = (_noun(c)[0] for c in call.children)
    return f"either a {first} or a {second}"


_COMPARISON_TEXT = {"equal": "as many {} as {}", "more": "more {} than {}", "fewer": "fewer {} than {}"}


def program_to_question(program: Program) -> str:
    """Deterministic English question for a program; every call of the program shows in the text.

    Raises:
        UnknownNameError, ConfigError: as :func:`execute`, for a program outside the vocabulary.

    Example:
        >>> program_to_question(Program.parse("exist(and(find[red], relate[left](find[cube])))"))
        'is there a red thing that is left of a cube?'
        >>> program_to_question(Program.parse("equal[size](find[cube], same[color](find[sphere]))"))
        'does the cube have the same size as the thing of the same color as the sphere?'
    """
    for call in program.postorder():
        _check_call(call, at_root=call is program)
    nouns = [_noun(c) for c in program.children]
    if program.name == "equal":
        return f"does the {nouns[0][0]} have the same {program.arg} as the {nouns[1][0]}?"
    if program.name == "compare":
        return f"are there {_COMPARISON_TEXT[program.arg].format(nouns[0][1], nouns[1][1])}?"
    one, many = nouns[0]
    if program.name == "exist":
        return f"is there a {one}?"
    if program.name == "count":
        return f"how many {many} are there?"
    return f"what {program.arg} is the {one}?"


# ---------------------------------------------------------------------------------------- generation
class Node(NamedTuple):
    """A program call during generation, with the set it selects as a bit mask (bit i = object i)."""

    name: str
    arg: str | None
    children: tuple[Node, ...]
    bits: int


class Candidate(NamedTuple):
    """A generated question: the program tree (internal form) and its answer on the scene."""

    node: Node
    answer: str

    def program(self) -> Program:
        """The candidate as a :class:`Program`."""
        return _to_program(self.node)


_LEAF_PROGRAMS = {v: Program("find", v) for v in FIND_VALUES}


def _to_program(node: Node) -> Program:
    if node.name == "find":
        return _LEAF_PROGRAMS[node.arg]
    return Program(node.name, node.arg, tuple(_to_program(c) for c in node.children))


def determines(node: Node, attr: str) -> bool:
    """Whether the program text alone fixes ``attr`` of every object of the set (a trivial describe)."""
    if node.name == "find":
        return ATTRIBUTE_OF[node.arg] == attr
    if node.name == "and":
        return determines(node.children[0], attr) or determines(node.children[1], attr)
    if node.name == "or":
        return determines(node.children[0], attr) and determines(node.children[1], attr)
    return False


class Uniforms:
    """Uniform draws in ``[0, 1)`` from a numpy ``Generator``, fetched in blocks of 256: one ``Generator`` call
    per scalar would dominate the cost of a program sampler."""

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._block: Iterator[float] = iter(())

    def random(self) -> float:
        """The next uniform draw."""
        for u in self._block:
            return u
        self._block = iter(self._rng.random(256).tolist())
        return next(self._block)

    def choice(self, items: Sequence):
        """A uniformly random element of ``items`` (not empty)."""
        return items[int(self.random() * len(items))]
