import numpy as np
import pytest

from modnets.compose import Program
from modnets.data import (
    ANSWERS,
    CLOSURE_HELD_OUT,
    COGENT_COLORS,
    COLORS,
    SHAPES,
    ClevrLikeConfig,
    closure_split,
    cogent_split,
    execute,
    make_clevr_like,
    program_template,
    sample_scene,
    structure_pairs,
)
from modnets.errors import ConfigError, UnknownNameError

SMALL = {"n_examples": 120, "image_size": 16, "depths": (2, 3, 4)}


def pairings(data) -> set[tuple[str, str]]:
    """Every (shape, colour) of an object in the data set's scenes."""
    return {(SHAPES[s], COLORS[c]) for scene in data.scenes for s, c in zip(scene.shape, scene.color, strict=True)}


def allowed(condition: str) -> set[tuple[str, str]]:
    return {(shape, color) for shape, colors in COGENT_COLORS[condition].items() for color in colors}


@pytest.fixture(scope="module")
def cogent():
    return cogent_split(ClevrLikeConfig(**SMALL, programs="clevr"), n_test=80)


def test_cogent_conditions_swap_cube_and_cylinder_colours_and_leave_spheres_free():
    a, b = COGENT_COLORS["A"], COGENT_COLORS["B"]
    assert a["cube"] == b["cylinder"] and a["cylinder"] == b["cube"] and a["sphere"] == b["sphere"] == COLORS
    assert set(a["cube"]) | set(a["cylinder"]) == set(COLORS) and not set(a["cube"]) & set(a["cylinder"])


def test_no_condition_a_scene_holds_a_b_only_pairing_and_vice_versa(cogent):
    a_only, b_only = allowed("A") - allowed("B"), allowed("B") - allowed("A")
    assert len(a_only) == len(b_only) == 8
    for part in (cogent.train, cogent.test):
        assert pairings(part) <= allowed("A") and not pairings(part) & b_only
    assert pairings(cogent.held_out) <= allowed("B") and not pairings(cogent.held_out) & a_only
    assert pairings(cogent.held_out) & b_only  # the held-out test does show the unseen pairings


def test_cogent_parts_have_their_sizes_conditions_and_answers(cogent):
    assert (len(cogent.train), len(cogent.test), len(cogent.held_out)) == (120, 80, 80)
    assert [p.config.condition for p in cogent] == ["A", "A", "B"]
    for part in cogent:
        assert all(ANSWERS[a] == execute(p, s) for p, s, a in zip(part.programs, part.scenes, part.answers.tolist(),
                                                                 strict=True))
    assert not {s.x.tobytes() for s in cogent.train.scenes} & {s.x.tobytes() for s in cogent.test.scenes}


def test_a_scene_of_a_condition_draws_only_its_pairings():
    rng = np.random.default_rng(0)
    for condition in ("A", "B"):
        objects = {(SHAPES[s], COLORS[c]) for _ in range(200)
                   for scene in [sample_scene(rng, min_objects=5, condition=condition)]
                   for s, c in zip(scene.shape, scene.color, strict=True)}
        assert objects == allowed(condition)  # every allowed pairing comes up, and nothing else


def test_cogent_split_refuses_a_config_with_a_condition_and_conditions_are_checked():
    with pytest.raises(ConfigError, match="condition=None"):
        cogent_split(ClevrLikeConfig(**SMALL, condition="A"))
    with pytest.raises(ConfigError, match="condition"):
        ClevrLikeConfig(condition="C")
    with pytest.raises(ConfigError, match="condition='a'"):
        sample_scene(np.random.default_rng(0), condition="a")
    with pytest.raises(ConfigError, match="n_test"):
        cogent_split(ClevrLikeConfig(**SMALL), n_test=0)
    assert ClevrLikeConfig.from_dict(ClevrLikeConfig(condition="B").to_dict()).condition == "B"


def test_without_a_condition_pairings_of_both_conditions_occur():
    config = ClevrLikeConfig(**SMALL)
    assert config.condition is None and pairings(make_clevr_like(config)) - allowed("A") - allowed("B") == set()
    assert pairings(make_clevr_like(config)) & (allowed("B") - allowed("A"))  # free pairings by default


# ----------------------------------------------------------------------------------------------- CLOSURE
@pytest.fixture(scope="module")
def closure():
    return closure_split(ClevrLikeConfig(**{**SMALL, "n_examples": 300, "depths": (3, 4, 5)}, programs="clevr"),
                         n_test=60)


def test_every_held_out_template_is_absent_from_training(closure):
    trained = {program_template(p) for p in closure.train.programs}
    held = {program_template(p) for p in closure.held_out.programs}
    assert held and not held & trained
    assert not held & {program_template(p) for p in closure.test.programs}


def test_every_module_of_the_held_out_programs_is_trained(closure):
    def modules(data):
        return {call.name for p in data.programs for call in p.postorder()}

    assert modules(closure.held_out) <= modules(closure.train)
    assert {"relate", "same", "equal", "compare"} <= modules(closure.held_out)


def test_held_out_programs_match_a_rule_and_the_others_none(closure):
    rules = set(CLOSURE_HELD_OUT)
    assert all(structure_pairs(p) & rules for p in closure.held_out.programs)
    assert not any(structure_pairs(p) & rules for part in (closure.train, closure.test) for p in part.programs)
    assert {r for p in closure.held_out.programs for r in structure_pairs(p) & rules} == rules  # each rule used
    assert (len(closure.train), len(closure.test), len(closure.held_out)) == (300, 60, 60)
    for part in closure:
        assert all(ANSWERS[a] == execute(p, s) for p, s, a in zip(part.programs, part.scenes, part.answers.tolist(),
                                                                 strict=True))
        assert len(part.images) == len(part) and len(set(part.scene_ids.tolist())) == len(set(map(id, part.scenes)))


def test_closure_split_is_seeded():
    config = ClevrLikeConfig(**{**SMALL, "n_examples": 60}, programs="clevr")
    one, two = closure_split(config, n_test=10), closure_split(config, n_test=10)
    for a, b in zip(one, two, strict=True):
        assert [str(p) for p in a.programs] == [str(p) for p in b.programs]


def test_templates_and_structure_pairs():
    program = Program.parse("equal[color](relate[left](find[red]), same[shape](and(find[cube], find[small])))")
    assert program_template(program) == "equal(relate(find), same(and(find, find)))"
    assert ("equal", "relate") in structure_pairs(program) and ("relate", "same") not in structure_pairs(program)
    assert ("and", "and") not in structure_pairs(program)


@pytest.mark.parametrize(("rules", "error", "message"), [
    ((("relate", "jump"),), UnknownNameError, "unknown module 'jump'"),
    ((), ConfigError, "non-empty"),
    ("relate", ConfigError, "non-empty"),
    ((("relate",),), ConfigError, r"\(outer, inner\) pair"),
    ((("equal", "find"),), ConfigError, "keep module.*equal"),
    ((("find", "relate"),), ConfigError, "select 0 of"),
])
def test_bad_rules_raise_errors_that_name_them(rules, error, message):
    config = ClevrLikeConfig(**{**SMALL, "n_examples": 100}, programs="clevr")
    with pytest.raises(error, match=message):
        closure_split(config, n_test=10, held_out=rules)
