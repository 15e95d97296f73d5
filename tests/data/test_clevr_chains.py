"""The reasoning-chain program families (``chains``, ``clevr``): semantics of the new modules on hand-built
scenes, and the properties every generated chain must have at every depth."""

import collections

import numpy as np
import pytest

from modnets.compose import Program
from modnets.data import (
    ANSWERS,
    PROGRAM_FAMILIES,
    ClevrLikeConfig,
    Scene,
    execute,
    generate_program,
    make_clevr_like,
    program_to_question,
    sample_scene,
    select,
)
from modnets.data._clevr_programs import ATTRIBUTE_OF
from modnets.data._clevr_scene import SIZE_RADIUS
from modnets.errors import ConfigError

DEPTHS = tuple(range(2, 21))


def _scene() -> Scene:
    # 0: red small cube (0.2, 0.2)       1: blue large sphere (0.5, 0.8)
    # 2: red large cylinder (0.8, 0.5)   3: green small sphere (0.35, 0.5)   4: blue small cube (0.65, 0.3)
    return Scene.from_objects(
        [
            {"color": "red", "shape": "cube", "size": "small", "x": 0.2, "y": 0.2},
            {"color": "blue", "shape": "sphere", "size": "large", "x": 0.5, "y": 0.8},
            {"color": "red", "shape": "cylinder", "size": "large", "x": 0.8, "y": 0.5},
            {"color": "green", "shape": "sphere", "size": "small", "x": 0.35, "y": 0.5},
            {"color": "blue", "shape": "cube", "size": "small", "x": 0.65, "y": 0.3},
        ]
    )


def run(text: str) -> str:
    return execute(Program.parse(text), _scene())


@pytest.fixture(scope="module", params=["chains", "clevr"])
def family_data(request):
    """Every depth 2..20, a few questions each, of one chain family."""
    data = make_clevr_like(
        ClevrLikeConfig(n_examples=12 * len(DEPTHS), depths=DEPTHS, image_size=16, seed=5, programs=request.param)
    )
    return request.param, data


# ------------------------------------------------------------------------------------------ semantics
def test_same_selects_the_other_objects_sharing_the_attribute():
    pick = lambda text: np.flatnonzero(select(Program.parse(text), _scene())).tolist()  # noqa: E731
    assert pick("same[color](find[cylinder])") == [0]  # the other red thing
    assert pick("same[shape](find[green])") == [1]  # the other sphere
    assert pick("same[size](find[cylinder])") == [1]  # the other large thing
    assert pick("same[size](find[green])") == [0, 4]
    assert pick("same[color](find[green])") == []  # the only green thing
    assert run("count(and(find[cube], same[size](find[green])))") == "2"
    assert run("describe[shape](same[color](and(find[small], find[red])))") == "cylinder"


def test_same_and_equal_need_exactly_one_object():
    with pytest.raises(ConfigError, match=r"same\[color\] needs exactly one object, .* holds 2"):
        run("count(same[color](find[red]))")
    with pytest.raises(ConfigError, match=r"equal\[size\] needs exactly one object, .* holds 0"):
        run("equal[size](find[cylinder], find[yellow])")


def test_equal_compares_the_attribute_of_two_single_objects():
    assert run("equal[color](find[cylinder], and(find[cube], find[red]))") == "yes"
    assert run("equal[shape](find[cylinder], find[green])") == "no"
    assert run("equal[size](find[green], and(find[blue], relate[above](find[green])))") == "yes"


def test_compare_counts_two_sets():
    # 2 red things, 2 spheres, 3 small things, 1 cylinder
    assert run("compare[equal](find[red], find[sphere])") == "yes"
    assert run("compare[more](find[small], find[red])") == "yes"
    assert run("compare[more](find[red], find[small])") == "no"
    assert run("compare[fewer](find[cylinder], find[sphere])") == "yes"
    assert run("compare[fewer](find[sphere], find[red])") == "no"
    # relate from a single object: left of the green sphere (x = 0.35) is the red cube only
    assert run("compare[equal](relate[left](find[green]), find[cylinder])") == "yes"


def test_select_matches_execute_and_refuses_answers():
    scene = _scene()
    assert select(Program.parse("relate[below](find[cylinder])"), scene).tolist() == [False, True, False, False, False]
    with pytest.raises(ConfigError, match="root"):
        select(Program.parse("count(find[red])"), scene)


def test_question_text_of_the_new_modules():
    assert program_to_question(Program.parse("count(same[color](find[cylinder]))")) == (
        "how many things of the same color as the cylinder are there?"
    )
    assert program_to_question(Program.parse("equal[shape](find[green], and(find[red], find[large]))")) == (
        "does the green thing have the same shape as the red thing that is large?"
    )
    assert program_to_question(Program.parse("compare[fewer](find[cube], relate[left](find[red]))")) == (
        "are there fewer cubes than things left of a red thing?"
    )
    assert program_to_question(Program.parse("compare[equal](find[cube], find[small])")) == (
        "are there as many cubes as small things?"
    )
    assert program_to_question(Program.parse("exist(and(find[cube], same[size](find[sphere])))")) == (
        "is there a cube that is of the same size as the sphere?"
    )


# ------------------------------------------------------------------------------------------ generated chains
def _hops(program: Program):
    """Every hop (relate / same call) and the chain of find filters applied to it."""
    parent = {c: p for p in program.postorder() for c in p.children}
    for call in program.postorder():
        if call.name in ("relate", "same"):
            filters, node = [], call
            while node in parent and parent[node].name == "and" and parent[node].children[1] is node:
                filters.append(parent[node].children[0].arg)
                node = parent[node]
            yield call, filters


def test_every_depth_is_exact_and_the_oracle_answers_every_question(family_data):
    family, data = family_data
    assert sorted(set(data.depths.tolist())) == list(DEPTHS)
    for program, depth, answer, scene, question in zip(
        data.programs, data.depths.tolist(), data.answers, data.scenes, data.questions, strict=True
    ):
        assert program.depth == depth and Program.parse(str(program)) == program
        assert program.name in PROGRAM_FAMILIES[family]
        assert ANSWERS[int(answer)] == execute(program, scene)
        assert question == program_to_question(program)
        assert family == "clevr" or all(c.name in ("find", "relate", "and") for c in program.children[0].postorder())


def test_every_hop_starts_from_one_object_and_its_filters_need_it(family_data):
    _, data = family_data
    hops = 0
    for program, scene in zip(data.programs, data.scenes, strict=True):
        for hop, filters in _hops(program):
            hops += 1
            start = select(hop.children[0], scene)
            assert start.sum() == 1, (str(program), str(hop))
            # each filter strictly shrinks the hop's result, and more objects of the scene than the hop keeps
            # pass the filters (the distractors the hop rules out)
            kept = select(hop, scene)
            for value in filters:
                shrunk = kept & select(Program("find", value), scene)
                assert 0 < kept.sum() and shrunk.sum() < kept.sum(), (str(program), str(hop), value)
                kept = shrunk
            assert (_passing(filters, scene) & ~kept).any(), (str(program), str(hop))
    assert hops > 3 * len(data)


def test_relate_hops_rule_out_a_close_distractor(family_data):
    _, data = family_data
    for program, scene in zip(data.programs, data.scenes, strict=True):
        for hop, filters in _hops(program):
            if hop.name != "relate":
                continue
            t = int(np.flatnonzero(select(hop.children[0], scene))[0])
            ruled_out = _passing(filters, scene) & ~select(hop, scene)
            ruled_out[t] = False
            axis = scene.x if hop.arg in ("left", "right") else scene.y
            radius = np.asarray(SIZE_RADIUS)[scene.size]
            near = np.abs(axis - axis[t]) < 0.4 * (radius + radius[t])
            assert (ruled_out & near).any(), (str(program), str(hop))


def test_a_mistaken_hop_changes_what_follows():
    """Started from a distractor of the previous hop (an object that passes its filters but that the hop ruled
    out), the next hop ends on another set."""
    data = make_clevr_like(ClevrLikeConfig(n_examples=150, depths=(8, 12), image_size=16, seed=2, programs="chains"))
    checked = 0
    for program, scene in zip(data.programs, data.scenes, strict=True):
        hops = list(_hops(program))  # one chain: each hop reads the one before, filtered
        for (_, first_filters), (second, second_filters) in zip(hops, hops[1:], strict=False):
            distractors = _passing(first_filters, scene) & ~select(second.children[0], scene)
            after = _passing(second_filters, scene)
            for d in np.flatnonzero(distractors):
                moved = _hop_from(second, int(d), scene) & after
                assert not np.array_equal(moved, select(second, scene) & after), (str(program), str(second), int(d))
                checked += 1
    assert checked > 50


def _passing(filters, scene: Scene) -> np.ndarray:
    """The objects of the scene that pass every filter value."""
    passing = np.ones(scene.n_objects, dtype=bool)
    for value in filters:
        passing &= select(Program("find", value), scene)
    return passing


def _hop_from(hop: Program, t: int, scene: Scene) -> np.ndarray:
    """The set a hop (relate / same) selects when started from object ``t``."""
    one = np.zeros(scene.n_objects, dtype=bool)
    one[t] = True
    if hop.name == "relate":
        axis = scene.x if hop.arg in ("left", "right") else scene.y
        return axis < axis[t] if hop.arg in ("left", "above") else axis > axis[t]
    column = {"color": scene.color, "shape": scene.shape, "size": scene.size}[hop.arg]
    return (column == column[t]) & ~one


def test_describe_never_reads_an_attribute_its_last_filters_name(family_data):
    _, data = family_data
    for program in data.programs:
        if program.name in ("describe", "equal"):
            for child in program.children:
                node = child
                while node.name == "and":
                    assert ATTRIBUTE_OF[node.children[0].arg] != program.arg, str(program)
                    node = node.children[1]
                assert node.name != "find" or ATTRIBUTE_OF[node.arg] != program.arg, str(program)


def test_answers_are_balanced_per_depth():
    data = make_clevr_like(
        ClevrLikeConfig(n_examples=1800, depths=(2, 6, 12, 20), image_size=16, seed=4, programs="chains")
    )
    groups: dict[tuple, collections.Counter] = collections.defaultdict(collections.Counter)
    for program, answer in zip(data.programs, data.answers, strict=True):
        groups[program.key, program.depth][ANSWERS[int(answer)]] += 1
    for (key, depth), counts in groups.items():
        n, top = sum(counts.values()), max(counts.values()) / sum(counts.values())
        if key == "exist":  # exactly half overall, about half at each depth
            assert abs(counts["yes"] - counts["no"]) <= 0.15 * n, (depth, counts)
        elif key == "count":
            assert top <= 0.2 and len(counts) >= 8, (depth, counts)
        else:
            values = {"describe[color]": 8, "describe[shape]": 3, "describe[size]": 2}[key]
            assert top <= 1.5 / values and len(counts) == values, (key, depth, counts)
        assert n >= 30


def test_clevr_family_balances_its_comparisons():
    data = make_clevr_like(ClevrLikeConfig(n_examples=600, depths=(3, 10), image_size=16, seed=6, programs="clevr"))
    kinds = collections.Counter(p.name for p in data.programs)
    assert set(kinds) == set(PROGRAM_FAMILIES["clevr"]) and max(kinds.values()) - min(kinds.values()) <= 1
    for kind in ("equal", "compare"):
        answers = collections.Counter(
            ANSWERS[int(a)] for p, a in zip(data.programs, data.answers, strict=True) if p.name == kind
        )
        assert abs(answers["yes"] - answers["no"]) <= 2, (kind, answers)
    ops = collections.Counter(p.arg for p in data.programs if p.name == "compare")
    assert set(ops) == {"equal", "more", "fewer"}


@pytest.mark.parametrize("family", ["chains", "clevr"])
def test_generate_program_reaches_every_depth(family):
    rng = np.random.default_rng(1)
    for depth in (2, 3, 7, 14, 20, 24):
        scene = sample_scene(rng, min_objects=7)
        for kind in PROGRAM_FAMILIES[family]:
            program = generate_program(rng, scene, depth, kind=kind, family=family)
            assert program.depth == depth and program.name == kind
            assert execute(program, scene) in ANSWERS


def test_generate_program_checks_its_arguments():
    rng, scene = np.random.default_rng(0), _scene()
    with pytest.raises(ConfigError, match="family='trees'"):
        generate_program(rng, scene, 4, family="trees")
    with pytest.raises(ConfigError, match="kind='equal'; accepted for family 'chains'"):
        generate_program(rng, scene, 4, kind="equal", family="chains")
    with pytest.raises(ConfigError, match="attr='more'"):
        generate_program(rng, scene, 4, kind="describe", attr="more", family="clevr")
    assert generate_program(rng, scene, 4, kind="compare", attr="more", family="clevr").key == "compare[more]"
    lonely = Scene.from_objects([_scene().objects()[0]])
    with pytest.raises(ConfigError, match="found no describe of family 'chains' and depth 6"):
        generate_program(rng, lonely, 6, kind="describe", family="chains")


def test_config_programs_field():
    cfg = ClevrLikeConfig(n_examples=30, depths=(2, 9), image_size=16, seed=3, programs="clevr")
    assert ClevrLikeConfig.from_dict(cfg.to_dict()) == cfg
    a, b = make_clevr_like(cfg), make_clevr_like(ClevrLikeConfig.from_dict(cfg.to_dict()))
    assert a.programs == b.programs and (a.images == b.images).all()
    with pytest.raises(ConfigError, match="programs='trees'"):
        ClevrLikeConfig(programs="trees")
    with pytest.raises(ConfigError, match="max_objects=2 .* programs='chains'"):
        ClevrLikeConfig(programs="chains", min_objects=1, max_objects=2)
