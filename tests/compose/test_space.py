import itertools

import pytest
import torch
from torch import nn

from modnets.compose import Library, Program, ProgramSpace
from modnets.errors import ConfigError, TypeMismatchError, UnknownNameError
from modnets.modules import PerArgument, Signature, Typed, TypedModule
from modnets.types import Latent, Mask, Probs


class Leaf(TypedModule):
    def __init__(self):
        super().__init__(Signature(output=Latent(4), context={"x": Latent(4)}), arguments=["a", "b"])
        self.emb = nn.Embedding(2, 4)

    def compute(self, *, arg=None, x):
        return torch.tanh(x * self.emb(arg))


class Add(TypedModule):
    def __init__(self):
        super().__init__(Signature(inputs={"u": Latent(4), "v": Latent(4)}, output=Latent(4)))
        self.lin = nn.Linear(4, 4)

    def compute(self, u, v, *, arg=None):
        return self.lin(u) * v


def toy_library() -> Library:
    """Leaves with an embedded argument, a per-argument unary, a binary, a typed head and a unary on the root
    type, so that programs of every shape up to the bounds exist."""
    return Library({
        "leaf": Leaf(),
        "scale": PerArgument(lambda _: Typed(nn.Linear(4, 4), Signature(inputs={"v": Latent(4)}, output=Latent(4))),
                             ["up", "down"]),
        "add": Add(),
        "head": Typed(nn.Linear(4, 3), Signature(inputs={"v": Latent(4)}, output=Probs(3))),
        "pick": Typed(nn.Identity(), Signature(inputs={"p": Probs(3)}, output=Probs(3))),
    })


def naive_members(library: Library, output, max_size: int, max_depth: int) -> set[Program]:
    """Every program up to the bounds, built without types, then filtered by ``Library.check``."""
    calls = [(n, a) for n in library.names for a in (library[n].arguments or [None])]
    arity = {n: library.signature(n).arity for n in library.names}
    levels: list[set[Program]] = [set()]
    for _ in range(max_depth):
        below = sorted(levels[-1], key=str)
        level = set()
        for name, arg in calls:
            for kids in itertools.product(below, repeat=arity[name]):
                p = Program(name, arg, kids)
                if p.size <= max_size:
                    level.add(p)
        levels.append(level | levels[-1])
    members = set()
    for p in levels[-1]:
        try:
            out = library.check(p)
        except TypeMismatchError:
            continue
        if output.accepts(out):
            members.add(p)
    return members


@pytest.mark.parametrize("max_size, max_depth", [(1, None), (2, None), (4, 3), (5, 4), (6, 3), (5, 2)])
def test_enumeration_is_exactly_the_type_correct_programs_within_the_bounds(max_size, max_depth):
    lib = toy_library()
    depth = max_size if max_depth is None else max_depth
    expected = naive_members(lib, Probs(3), max_size, depth)
    if not expected:
        with pytest.raises(ConfigError, match="holds no program"):
            ProgramSpace.of(lib, output=Probs(3), max_size=max_size, max_depth=max_depth)
        return
    space = ProgramSpace.of(lib, output=Probs(3), max_size=max_size, max_depth=max_depth)
    found = space.enumerate()
    assert len(found) == len(set(found)) == space.count()
    assert set(found) == expected
    assert [p.size for p in found] == sorted(p.size for p in found)  # smallest first
    assert space.enumerate(limit=3) == found[:3]
    for p in found:
        assert space.contains(p)
        assert space.decode(space.encode(p)) == p


def test_encode_is_prefix_order_and_decode_accepts_padding():
    space = ProgramSpace.of(toy_library(), output=Probs(3), max_size=6)
    p = Program.parse("pick(head(add(leaf[a], scale[down](leaf[b]))))")
    ids = space.encode(p)
    assert [space.tokens[i] for i in ids] == ["pick", "head", "add", "leaf[a]", "scale[down]", "leaf[b]"]
    assert space.decode([*ids, -1, -1]) == p
    assert space.token("scale[up]") == space.tokens.index("scale[up]")


def test_the_tables_give_the_smallest_completion():
    space = ProgramSpace.of(toy_library(), output=Probs(3), max_size=6, max_depth=4)
    probs = space.slot_types.index(Probs(3))
    latent = space.slot_types.index(Latent(4))
    assert int(space.min_size[probs, 4]) == 2  # head(leaf[.])
    assert int(space.min_size[latent, 1]) == 1  # a leaf
    assert int(space.min_size[probs, 1]) > space.max_size  # no answer without an input
    assert int(space.cost[3, space.token("add")]) == 3


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("head(add(add(leaf[a], leaf[b]), add(leaf[a], leaf[b])))", TypeMismatchError, "outside the space's bounds"),
        ("head(leaf[c])", UnknownNameError, r"no call 'leaf\[c\]'"),
        ("head(leaf)", UnknownNameError, "no call 'leaf'"),
        ("scale[up](leaf[a])", TypeMismatchError, "must produce Probs"),
        ("head(pick(head(leaf[a])))", TypeMismatchError, "input 1 of 'head' expects Latent"),
    ],
)
def test_check_names_what_is_outside_the_space(text, error, message):
    space = ProgramSpace.of(toy_library(), output=Probs(3), max_size=5, max_depth=4)
    with pytest.raises(error, match=message):
        space.check(Program.parse(text))
    assert not space.contains(Program.parse(text))


def test_bad_arguments_are_refused():
    lib = toy_library()
    with pytest.raises(ConfigError, match="max_size must be an int >= 1"):
        ProgramSpace.of(lib, output=Probs(3), max_size=0)
    with pytest.raises(ConfigError, match="holds no program"):
        ProgramSpace.of(lib, output=Mask(), max_size=4)
    with pytest.raises(UnknownNameError, match="unknown module 'nope'"):
        ProgramSpace.of(lib, output=Probs(3), max_size=4, modules=["head", "nope"])
    with pytest.raises(ConfigError, match="arguments name modules without a signature"):
        ProgramSpace({"head": lib.signature("head")}, output=Probs(3), max_size=2, arguments={"leaf": ["a"]})
    with pytest.raises(ConfigError, match=r"must be ids in \[0, 7\)"):
        ProgramSpace.of(lib, output=Probs(3), max_size=3).decode([99])
    with pytest.raises(ConfigError, match="do not form a program"):
        ProgramSpace.of(lib, output=Probs(3), max_size=3).decode([ProgramSpace.of(lib, output=Probs(3),
                                                                                  max_size=3).token("head")])
