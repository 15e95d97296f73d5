"""Assemblies round-trip through JSON, and a bad JSON form is refused field by field."""

import json

import pytest

from modnets.errors import ConfigError
from modnets.models import ASSEMBLIES
from modnets.plan import ASSEMBLY_FORMAT, Assembly, Loss, Merge, ModuleSpec, read_assembly


@pytest.mark.parametrize("name", list(ASSEMBLIES))
def test_every_preset_round_trips(name):
    assembly = ASSEMBLIES[name][0]()
    text = assembly.to_json()
    again = Assembly.from_json(text)
    assert again == assembly and again.to_json() == text
    assert json.loads(text)["format"] == ASSEMBLY_FORMAT


def test_optional_fields_may_be_left_out():
    text = json.dumps({"sources": ["x"], "modules": [{"name": "enc", "inputs": ["x"]}, {"name": "bias"}]})
    assert Assembly.from_json(text) == Assembly(sources=("x",), modules=(ModuleSpec("enc", ("x",)),
                                                                          ModuleSpec("bias")))


def _valid() -> dict:
    return Assembly(sources=("x",), modules=(ModuleSpec("a", ("x",)), ModuleSpec("b", ("x",))),
                    merges=(Merge("ab", ("a", "b"), "product"),), losses=(Loss("y", on="ab"),),
                    name="mine").to_dict()


def _change(*edits):
    """The valid JSON form with each ``(path, value)`` edit made (``KeyError``: delete the field)."""
    data = _valid()
    for path, value in zip(edits[::2], edits[1::2], strict=True):
        *parents, last = path
        target = data
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"sources": ', r"assembly is not valid JSON: Expecting value at line 1, column 13"),
        ("[1, 2]", "assembly must be a JSON object, got list"),
        (_change(["format"], "modnets-assembly/9"), "assembly.format must be 'modnets-assembly/1', got"),
        (_change(["stages"], []), r"assembly has unknown fields \['stages'\]; accepted: sources, modules"),
        (_change(["modules"], KeyError), r"assembly lacks the fields \['modules'\]"),
        (_change(["sources"], "x"), "assembly.sources must be a JSON list, got str"),
        (_change(["modules", 1, "inputs", 0], 3), r"assembly.modules\[1\].inputs\[0\] must be a non-empty string"),
        (_change(["modules", 0, "pretrained"], "yes"), r"assembly.modules\[0\].pretrained must be true or false"),
        (_change(["modules", 0, "input"], ["x"]), r"assembly.modules\[0\] has unknown fields \['input'\]"),
        (_change(["merges", 0, "op"], "sum"), r"assembly.merges\[0\]: Merge\('ab'\).op must be one of"),
        (_change(["losses", 0], {"name": "y"}), r"assembly.losses\[0\] lacks the fields \['on'\]"),
        (_change(["losses", 0, "on"], "nowhere"), "assembly: Loss 'y' is on 'nowhere', which is not a module"),
        (_change(["modules", 0, "inputs"], ["b"], ["modules", 1, "inputs"], ["a"]),
         "assembly: Assembly must be acyclic, got the cycle a -> b -> a"),
        (_change(["modules", 1, "name"], "a"), "assembly: Assembly node names must be unique, got 'a' twice"),
        (_change(["name"], ""), "assembly.name must be a non-empty string"),
    ],
)
def test_bad_json_is_refused_with_the_field_named(text, message):
    with pytest.raises(ConfigError, match=message):
        Assembly.from_json(text)


def test_read_assembly_from_a_file_or_a_reference(tmp_path, monkeypatch):
    assembly = ASSEMBLIES["figure-4.1"][0]()
    (tmp_path / "mine.json").write_text(assembly.to_json())
    assert read_assembly(tmp_path / "mine.json") == assembly
    assert read_assembly(str(tmp_path / "mine.json")) == assembly
    (tmp_path / "user_assemblies.py").write_text(
        "from modnets.models import example_assembly\n"
        "FIXED = example_assembly()\n"
        "def build():\n    return example_assembly()\n"
        "def needs(x):\n    return example_assembly()\n"
        "NOT_ONE = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert read_assembly("user_assemblies:FIXED") == assembly
    assert read_assembly("user_assemblies:build") == assembly
    for source, message in [
        ("user_assemblies:needs", "is a function that needs arguments"),
        ("user_assemblies:NOT_ONE", "gives a int, not a modnets.plan.Assembly"),
        ("user_assemblies:nothing", "'user_assemblies' has no attribute 'nothing'"),
        ("no_such_module_here:x", "cannot import module 'no_such_module_here'"),
        (str(tmp_path / "missing.json"), "cannot read assembly file"),
        ("just words", "is neither a JSON file nor a reference"),
    ]:
        with pytest.raises(ConfigError, match=message):
            read_assembly(source)
