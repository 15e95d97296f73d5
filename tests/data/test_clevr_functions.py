import pytest

from modnets import Program
from modnets.data import CLEVR_FUNCTIONS, clevr_program
from modnets.errors import ProgramSyntaxError, UnknownNameError
from modnets.models import nmn_library


def node(function, inputs=(), value=None, *, variant="v1.0"):
    if variant == "v1.0":
        return {"function": function, "inputs": list(inputs), "value_inputs": [] if value is None else [value]}
    return {"type": function, "inputs": list(inputs), "side_inputs": [] if value is None else [value]}


def scene():
    return node("scene")


CASES = [  # (CLEVR node list, the NMN program text)
    ([scene(), node("filter_color", [0], "red"), node("exist", [1])], "exist(find[red])"),
    ([scene(), node("count", [0])], "count(or(find[small], find[large]))"),
    ([scene(), node("filter_shape", [0], "cube"), node("filter_size", [1], "large"), node("count", [2])],
     "count(and(find[cube], find[large]))"),
    ([scene(), node("filter_color", [0], "blue"), node("unique", [1]), node("relate", [2], "left"),
      node("unique", [3]), node("query_shape", [4])], "describe[shape](relate[left](find[blue]))"),
    ([scene(), node("filter_color", [0], "blue"), node("unique", [1]), node("relate", [2], "right"),
      node("query_color", [3])], "describe[color](relate[right](find[blue]))"),
    ([scene(), node("filter_shape", [0], "sphere"), node("unique", [1]), node("relate", [2], "behind"),
      node("exist", [3])], "exist(relate[above](find[sphere]))"),
    ([scene(), node("filter_shape", [0], "sphere"), node("unique", [1]), node("relate", [2], "front"),
      node("query_size", [3])], "describe[size](relate[below](find[sphere]))"),
    ([scene(), node("filter_color", [0], "red"), scene(), node("filter_shape", [2], "cube"),
      node("intersect", [1, 3]), node("exist", [4])], "exist(and(find[red], find[cube]))"),
    ([scene(), node("filter_color", [0], "red"), scene(), node("filter_shape", [2], "cube"),
      node("union", [1, 3]), node("count", [4])], "count(or(find[red], find[cube]))"),
    ([scene(), node("unique", [0]), node("query_color", [1])], "describe[color](or(find[small], find[large]))"),
    ([scene(), node("filter_color", [0], "cyan"), node("unique", [1]), node("relate", [2], "left"), scene(),
      node("intersect", [3, 4]), node("count", [5])],
     "count(and(relate[left](find[cyan]), or(find[small], find[large])))"),
]


@pytest.mark.parametrize(("nodes", "expected"), CASES)
@pytest.mark.parametrize("variant", ["v1.0", "generator"])
def test_clevr_programs_convert_to_the_documented_nmn_programs(nodes, expected, variant):
    if variant == "generator":  # the "type" / "side_inputs" keys of the question generator
        nodes = [node(n["function"], n["inputs"], (n["value_inputs"] or [None])[0], variant="generator") for n in nodes]
    program = clevr_program(nodes)
    assert program == Program.parse(expected)
    for typed in (True, False):
        nmn_library(typed, grid=(4, 4)).check(program)


def test_the_cases_cover_every_mapped_function():
    used = {n["function"] for nodes, _ in CASES for n in nodes}
    assert used == set(CLEVR_FUNCTIONS)


UNMAPPED = [
    "filter_material", "query_material", "same_color", "same_shape", "same_size", "same_material", "equal_color",
    "equal_shape", "equal_size", "equal_material", "equal_integer", "less_than", "greater_than",
]


@pytest.mark.parametrize("function", UNMAPPED)
def test_an_unmapped_function_raises_naming_it(function):
    if function.startswith(("equal_", "less", "greater")):
        a = [scene(), node("count", [0])]
        nodes = [*a, *[dict(n, inputs=[i + 2 for i in n["inputs"]]) for n in a], node(function, [1, 3])]
    else:
        nodes = [scene(), node("unique", [0]), node(function, [1], "rubber" if function == "filter_material" else None)]
        if function.startswith(("filter", "same")):
            nodes.append(node("exist", [2]))
    with pytest.raises(UnknownNameError, match=f"'{function}' has no NMN counterpart") as info:
        clevr_program(nodes)
    assert "filter_color" in str(info.value)  # the mapped functions are listed


@pytest.mark.parametrize(
    ("nodes", "message", "position"),
    [
        ([], "non-empty list", 0),
        ([scene(), "exist"], "must be a mapping", 1),
        ([scene(), {"inputs": [0]}], "'function' \\(or 'type'\\)", 1),
        ([scene(), node("exist", [1])], "earlier node", 1),
        ([scene(), node("exist", [])], "takes 1 input", 1),
        ([scene(), scene(), node("intersect", [0]), node("exist", [2])], "takes 2 input", 2),
        ([scene(), node("filter_color", [0]), node("exist", [1])], "takes one argument", 1),
        ([scene(), node("exist", [0], "red")], "takes no argument", 1),
        ([scene(), node("filter_color", [0], "red")], "last node must answer", 1),
        ([scene(), node("count", [0]), node("filter_color", [1], "red"), node("exist", [2])], "only the last", 1),
        ([scene(), node("filter_color", [0], "red"), {"function": "exist", "inputs": "1"}], "must be a list", 2),
    ],
)
def test_malformed_programs_raise_with_the_node_position(nodes, message, position):
    with pytest.raises(ProgramSyntaxError, match=message) as info:
        clevr_program(nodes)
    assert info.value.position == position


def test_an_argument_outside_the_vocabulary_raises_listing_the_accepted_ones():
    with pytest.raises(UnknownNameError, match="filter_color\\[pink\\].*accepted: gray, red"):
        clevr_program([scene(), node("filter_color", [0], "pink"), node("exist", [1])])
    with pytest.raises(UnknownNameError, match="relate\\[under\\].*accepted: left, right, behind, front"):
        clevr_program([scene(), node("relate", [0], "under"), node("exist", [1])])
