"""CLEVR functional programs as NMN programs: each CLEVR function mapped onto the modules of
:func:`~modnets.models.nmn_library`.

A CLEVR program is a list of nodes in post-order, the root last. Each node names its function under
``"function"`` (CLEVR v1.0, CoGenT, CLOSURE) or ``"type"`` (the question generator's templates), the
indices of its input nodes under ``"inputs"``, and its argument under ``"value_inputs"`` or
``"side_inputs"``. The NMN library computes with attention maps, so CLEVR's set-valued functions
become map-valued calls and the answer functions become the root:

=========================================  ==============================================================
CLEVR function                             NMN program
=========================================  ==============================================================
``scene``                                  no call of its own: the whole scene; where a map of every
                                           object is needed, ``or(find[small], find[large])``
``filter_color[c]`` on ``scene``           ``find[c]``
``filter_color[c]`` on a set ``s``         ``and(s, find[c])``
``filter_shape[v]``, ``filter_size[v]``    the same, with ``find[v]``
``unique``                                 no call: its input (the NMN does not check uniqueness)
``relate[left]``, ``relate[right]``        ``relate[left]``, ``relate[right]``
``relate[behind]``, ``relate[front]``      ``relate[above]``, ``relate[below]`` (farther from the camera
                                           is higher in the image)
``intersect``                              ``and``
``union``                                  ``or``
``exist``                                  ``exist``
``count``                                  ``count``
``query_color``, ``query_shape``,          ``describe[color]``, ``describe[shape]``, ``describe[size]``
``query_size``
=========================================  ==============================================================

Not mapped, raising :class:`~modnets.errors.UnknownNameError` that names the function: ``filter_material``
and ``query_material`` (the library has no material attribute), ``same_color`` / ``same_shape`` /
``same_size`` / ``same_material``, ``equal_color`` / ``equal_shape`` / ``equal_size`` /
``equal_material``, ``equal_integer``, ``less_than`` and ``greater_than`` (the library has no module that
compares objects or answers). An answer function must be the root, and the root must be one.

Example:
    >>> nodes = [
    ...     {"function": "scene", "inputs": [], "value_inputs": []},
    ...     {"function": "filter_color", "inputs": [0], "value_inputs": ["red"]},
    ...     {"function": "unique", "inputs": [1], "value_inputs": []},
    ...     {"function": "relate", "inputs": [2], "value_inputs": ["left"]},
    ...     {"function": "filter_shape", "inputs": [3], "value_inputs": ["cube"]},
    ...     {"function": "count", "inputs": [4], "value_inputs": []},
    ... ]
    >>> str(clevr_program(nodes))
    'count(and(relate[left](find[red]), find[cube]))'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..compose._program import Program
from ..errors import ProgramSyntaxError, UnknownNameError
from ._clevr_scene import COLORS, SHAPES, SIZES

__all__ = ["CLEVR_FUNCTIONS", "clevr_program"]

#: CLEVR function -> the NMN program it becomes (``s``: the program of its input set).
CLEVR_FUNCTIONS: dict[str, str] = {
    "scene": "the whole scene: or(find[small], find[large]) where a map is needed",
    "filter_color": "find[c], or and(s, find[c])",
    "filter_shape": "find[v], or and(s, find[v])",
    "filter_size": "find[v], or and(s, find[v])",
    "unique": "s",
    "relate": "relate[left | right | above | below](s) for left, right, behind, front",
    "intersect": "and",
    "union": "or",
    "exist": "exist",
    "count": "count",
    "query_color": "describe[color]",
    "query_shape": "describe[shape]",
    "query_size": "describe[size]",
}

_FILTERS = {"filter_color": COLORS, "filter_shape": SHAPES, "filter_size": SIZES}
_RELATIONS = {"left": "left", "right": "right", "behind": "above", "front": "below"}
_QUERIES = {"query_color": "color", "query_shape": "shape", "query_size": "size"}
_ARITY = {"scene": 0, "intersect": 2, "union": 2}  # every other mapped function takes one input
_SCENE = None  # the value of a set node that selects every object
_EVERYTHING = Program("or", None, (Program("find", "small"), Program("find", "large")))


class _Answer:
    """A converted answer node: only the root may be one."""

    def __init__(self, program: Program):
        self.program = program


def _fail(message: str, index: int) -> ProgramSyntaxError:
    return ProgramSyntaxError(f"node {index}: {message}", text="", position=index)


def _node_parts(node: object, index: int) -> tuple[str, list[int], list[str]]:
    """The function name, input indices and arguments of one node, in either key variant."""
    if not isinstance(node, Mapping):
        raise _fail(f"a node must be a mapping, got {type(node).__name__}", index)
    function = node.get("function", node.get("type"))
    if not isinstance(function, str) or not function:
        raise _fail("a node needs a 'function' (or 'type') naming a CLEVR function", index)
    inputs = node.get("inputs", [])
    values = node.get("value_inputs", node.get("side_inputs", []))
    for key, items in (("inputs", inputs), ("value_inputs", values)):
        if not isinstance(items, Sequence) or isinstance(items, str):
            raise _fail(f"{function}: {key!r} must be a list, got {items!r}", index)
    for j in inputs:
        if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < index:
            raise _fail(f"{function}: input {j!r} must be the index of an earlier node (0..{index - 1})", index)
    if any(not isinstance(v, str) for v in values):
        raise _fail(f"{function}: arguments must be strings, got {values!r}", index)
    return function, list(inputs), list(values)


def _as_map(value: Program | _Answer | None, function: str, index: int) -> Program:
    """The attention program of a set value (the whole scene becomes a map of every object)."""
    if isinstance(value, _Answer):
        raise _fail(f"{function} reads an answer ({value.program.name}); it needs a set of objects", index)
    return _EVERYTHING if value is _SCENE else value


def _argument(function: str, values: list[str], accepted: Sequence[str], index: int) -> str:
    if len(values) != 1:
        raise _fail(f"{function} takes one argument, got {values!r}", index)
    if values[0] not in accepted:
        raise UnknownNameError(
            f"node {index}: {function}[{values[0]}] has an argument the NMN library does not know; "
            f"accepted: {', '.join(accepted)}"
        )
    return values[0]


def clevr_program(nodes: Sequence[Mapping]) -> Program:
    """The NMN program of a CLEVR functional program (see the table in the module docstring).

    Args:
        nodes: the CLEVR node list, post-order with the root last; each node has ``"function"`` or
            ``"type"``, ``"inputs"`` and ``"value_inputs"`` or ``"side_inputs"``.

    Returns:
        A program of ``find``, ``relate``, ``and``, ``or`` under one of ``exist``, ``count`` and
        ``describe``, which :func:`~modnets.models.nmn_library` type-checks and runs.

    Raises:
        UnknownNameError: a CLEVR function without an NMN counterpart (``same_color``, ``equal_integer``,
            ``filter_material``, ...), the message naming it and the mapped ones; or an argument outside
            the library's vocabulary (a colour it does not know), the message listing the accepted ones.
        ProgramSyntaxError: a malformed node list (missing keys, an input that is not an earlier node, the
            wrong number of inputs or arguments, an answer function anywhere but at the root);
            ``position`` is the node's index.
    """
    if not isinstance(nodes, Sequence) or isinstance(nodes, str) or len(nodes) == 0:
        raise ProgramSyntaxError("a CLEVR program must be a non-empty list of nodes", text="", position=0)
    parts = [_node_parts(node, index) for index, node in enumerate(nodes)]
    for index, (function, _, _) in enumerate(parts):  # before any other check: name what cannot map
        if function not in CLEVR_FUNCTIONS:
            raise UnknownNameError(
                f"node {index}: the CLEVR function {function!r} has no NMN counterpart; mapped functions: "
                f"{', '.join(CLEVR_FUNCTIONS)}"
            )
    values: list[Program | _Answer | None] = []
    for index, (function, inputs, args) in enumerate(parts):
        arity = _ARITY.get(function, 1)
        if len(inputs) != arity:
            raise _fail(f"{function} takes {arity} input(s), got {len(inputs)}", index)
        if function not in _FILTERS and function != "relate" and args:
            raise _fail(f"{function} takes no argument, got {args!r}", index)
        read = [values[j] for j in inputs]
        if function == "scene":
            values.append(_SCENE)
        elif function == "unique":
            _as_map(read[0], function, index)  # an answer may not feed it
            values.append(read[0])
        elif function in _FILTERS:
            find = Program("find", _argument(function, args, _FILTERS[function], index))
            if read[0] is _SCENE:
                values.append(find)
            else:
                values.append(Program("and", None, (_as_map(read[0], function, index), find)))
        elif function == "relate":
            relation = _RELATIONS[_argument(function, args, tuple(_RELATIONS), index)]
            values.append(Program("relate", relation, (_as_map(read[0], function, index),)))
        elif function in ("intersect", "union"):
            a, b = (_as_map(v, function, index) for v in read)
            values.append(Program("and" if function == "intersect" else "or", None, (a, b)))
        else:  # exist, count, query_*
            name, arg = ("describe", _QUERIES[function]) if function in _QUERIES else (function, None)
            values.append(_Answer(Program(name, arg, (_as_map(read[0], function, index),))))
        if isinstance(values[-1], _Answer) and index != len(nodes) - 1:
            raise _fail(f"{function} answers; only the last node (the root) may answer", index)
    root = values[-1]
    if not isinstance(root, _Answer):
        raise _fail(
            "the last node must answer (exist, count, query_color, query_shape or query_size)", len(nodes) - 1
        )
    return root.program
