import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modnets import Program
from modnets.errors import ProgramSyntaxError

names = st.sampled_from(["find", "relate", "and", "or", "exist", "count", "f_2"])
args = st.one_of(st.none(), st.sampled_from(["red", "left", "x1", "a-b", "0.5"]))
programs = st.recursive(
    st.builds(Program, names, args),
    lambda kids: st.builds(Program, names, args, st.lists(kids, min_size=1, max_size=3).map(tuple)),
    max_leaves=12,
)


def test_parse_text_form():
    p = Program.parse("describe[color](and(find[red], relate[left](find[circle])))")
    assert p.name == "describe" and p.arg == "color"
    assert str(p.children[0]) == "and(find[red], relate[left](find[circle]))"
    assert p.depth == 4 and p.size == 5
    assert Program.parse("  exist ( find [ red ] ) ") == Program.parse("exist(find[red])")
    assert Program.parse("f()") == Program("f")


@settings(max_examples=100, deadline=None)
@given(programs)
def test_text_and_node_forms_round_trip(p):
    assert Program.parse(str(p)) == p
    assert Program.from_nodes(p.to_nodes()) == p
    assert p.depth == 1 + max((c.depth for c in p.children), default=0)
    assert len(list(p.postorder())) == p.size


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="fa[](), xr1_-", max_size=30))
def test_parse_never_crashes_on_arbitrary_text(text):
    try:
        Program.parse(text)
    except ProgramSyntaxError as e:
        assert 0 <= e.position <= len(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parse_never_crashes_on_any_unicode_text(text):
    try:
        Program.parse(text)
    except ProgramSyntaxError as e:
        assert 0 <= e.position <= len(text)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["function", "inputs", "value_inputs", "x"]) | st.text(max_size=4), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_node_lists_never_crash_the_reader(nodes):
    try:
        Program.from_nodes(nodes)
    except ProgramSyntaxError:
        pass


@pytest.mark.parametrize(
    "text, position, message",
    [
        ("", 0, "empty program"),
        ("exist(find[red]", 15, "expected ',' or ')'"),
        ("exist(find[red]))", 16, "unexpected ')'"),
        ("find[]", 5, "expected an argument"),
        ("find[red", 8, "expected ']'"),
        ("and(find[a],)", 12, "expected a module name"),
        ("9lives", 0, "expected a module name"),
    ],
)
def test_syntax_errors_carry_the_position(text, position, message):
    with pytest.raises(ProgramSyntaxError, match=re.escape(message)) as info:
        Program.parse(text)
    assert info.value.position == position
    assert f"at position {position}" in str(info.value)


def test_deep_programs_do_not_hit_the_recursion_limit():
    text = "f(" * 3000 + "g" + ")" * 3000
    p = Program.parse(text)
    assert p.depth == 3001


def test_node_list_form_and_errors():
    nodes = [
        {"function": "find", "value_inputs": ["red"], "inputs": []},
        {"function": "relate", "value_inputs": ["left"], "inputs": [0]},
        {"function": "and", "inputs": [0, 1]},
        {"function": "exist", "inputs": [2]},
    ]
    p = Program.from_nodes(nodes)
    assert str(p) == "exist(and(find[red], relate[left](find[red])))"
    assert p.to_nodes() == [{**n, "value_inputs": n.get("value_inputs", [])} for n in nodes]
    with pytest.raises(ProgramSyntaxError, match="earlier node"):
        Program.from_nodes([{"function": "f", "inputs": [0]}])
    with pytest.raises(ProgramSyntaxError, match="'function' key"):
        Program.from_nodes([{"fn": "f"}])
    with pytest.raises(ProgramSyntaxError, match="non-empty"):
        Program.from_nodes([])
