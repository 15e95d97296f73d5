import json

import pytest

from modnets.analysis import (
    Assembly,
    Loss,
    Merge,
    ModuleSpec,
    dependencies,
    format_dependency_table,
    format_training_plan,
)
from modnets.errors import ConfigError
from modnets.models import example_assembly, nmn_assembly


def _chain(op: str) -> Assembly:
    """A and C read x; their outputs merge with ``op`` into D, which is supervised."""
    return Assembly(
        sources=("x",),
        modules=(ModuleSpec("A", ("x",)), ModuleSpec("C", ("x",)), ModuleSpec("D", ("AC",))),
        merges=(Merge("AC", ("A", "C"), op),),
        losses=(Loss("y", on="D"),),
    )


def test_figure_4_1_taxonomy_and_plan():
    report = dependencies(example_assembly())
    got = {r.module: (r.input, r.supervision, r.codependent_with) for r in report.rows}
    assert got == {
        "A": ("decoupled", "indirect", ()),
        "B": ("dependent", "indirect", ("C",)),
        "C": ("decoupled", "indirect", ("B",)),
        "D": ("dependent", "direct", ()),
    }
    plan = report.plan
    assert [s.modules for s in plan.stages] == [("A",), ("B", "C"), ("D",)]
    assert plan.stages[1].jobs == (("B", "C"),)  # the product merge makes them train jointly
    assert {(a.producer, a.consumers, a.after_stage) for a in plan.auxiliary} == {
        ("A", ("B",), 1), ("B", ("D",), 2), ("C", ("D",), 2)}
    assert {s.module: s.replaces for s in plan.surrogates} == {"A": ("B", "D"), "B": ("D",), "C": ("D",)}


@pytest.mark.parametrize("op", ["add", "mean", "concat", "weighted_sum"])
def test_safe_merges_leave_gradients_independent(op):
    report = dependencies(_chain(op))
    assert not any(r.codependent for r in report.rows)
    assert report.plan.stages[0].jobs == (("A",), ("C",))


@pytest.mark.parametrize("op", ["product", "min", "max", "geometric_mean", "custom"])
def test_other_merges_are_codependent(op):
    report = dependencies(_chain(op))
    assert report.row("A").codependent_with == ("C",) and report.row("C").codependent_with == ("A",)
    assert report.row("A").codependent_merges == (f"AC ({op})",)
    assert report.plan.stages[0].jobs == (("A", "C"),)
    assert f"with C in AC ({op})" in format_dependency_table(report)


def test_codependence_through_a_safe_merge_and_with_fixed_data():
    # product(add(A, B), C) couples A and B to C, not A to B; a product with data couples nothing.
    a = Assembly(
        sources=("x", "w"),
        modules=(ModuleSpec("A", ("x",)), ModuleSpec("B", ("x",)), ModuleSpec("C", ("x",)),
                 ModuleSpec("E", ("x",)), ModuleSpec("D", ("P", "Q"))),
        merges=(Merge("S", ("A", "B"), "add"), Merge("P", ("S", "C"), "product"), Merge("Q", ("E", "w"), "product")),
        losses=(Loss("y", on="D"),),
    )
    report = dependencies(a)
    assert report.row("A").codependent_with == ("C",)
    assert report.row("C").codependent_with == ("A", "B")
    assert not report.row("E").codependent


def test_frozen_modules_make_decoupled_input_and_merges_keep_direct_supervision():
    a = Assembly(
        sources=("image", "question"),
        modules=(ModuleSpec("cnn", ("image",), pretrained=True), ModuleSpec("att", ("cnn",)),
                 ModuleSpec("enc", ("question",)), ModuleSpec("head", ("att",))),
        merges=(Merge("logits", ("head", "enc"), "add"),),
        losses=(Loss("answer", on="logits"),),
    )
    report = dependencies(a)
    assert [r.module for r in report.rows] == ["att", "enc", "head"]  # the frozen CNN is not trained
    assert report.row("att").input == "decoupled"
    assert report.row("enc").supervision == "direct" and report.row("head").supervision == "direct"
    assert report.plan.frozen == ("cnn",)


def test_a_module_no_loss_reaches_is_left_out_of_the_stages():
    a = Assembly(sources=("x",), modules=(ModuleSpec("A", ("x",)), ModuleSpec("B", ("x",))), losses=(Loss("y", "A"),))
    report = dependencies(a)
    assert report.row("B").supervision == "none" and report.plan.unsupervised == ("B",)
    assert [s.modules for s in report.plan.stages] == [("A",)]
    assert "no loss reaches B" in format_training_plan(report.plan)


def test_nmn_preset_matches_thesis_table_4_1():
    report = dependencies(nmn_assembly(prior=True))
    table = {r.module: (r.input, r.supervision) for r in report.rows}
    assert table == {
        "encoder": ("decoupled", "direct"),
        "find": ("decoupled", "indirect"),
        "describe": ("dependent", "direct"),
        "exist": ("dependent", "direct"),
        "count": ("dependent", "direct"),
    }
    plan = report.plan
    assert [set(s.modules) for s in plan.stages] == [{"encoder", "find"}, {"describe", "exist", "count"}]
    assert [(s.module, s.losses) for s in plan.surrogates] == [("find", ("answer",))]
    (aux,) = plan.auxiliary
    assert (aux.producer, aux.consumers, aux.targets) == ("find", ("describe", "exist", "count"), ("answer",))
    json.dumps(report.to_dict())  # JSON-ready


def test_untyped_prior_geometric_average_couples_the_branches():
    report = dependencies(nmn_assembly(False, prior=True))
    assert report.row("describe").codependent_with == ("encoder",)
    assert report.plan.stages[1].jobs == (("encoder", "describe", "exist", "count"),)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Assembly(sources=("x",), modules=(ModuleSpec("A", ("z",)),)), "reads unknown nodes ['z']"),
        (lambda: Assembly(sources=("x",), modules=(ModuleSpec("A", ("B",)), ModuleSpec("B", ("A",)))),
         "must be acyclic, got the cycle A -> B -> A"),
        (lambda: Merge("m", ("a", "b"), "multiply"), "Merge('m').op must be one of"),
        (lambda: Assembly(sources=("x", "x"), modules=(ModuleSpec("A", ("x",)),)), "unique, got 'x' twice"),
        (lambda: Assembly(sources=("x",), modules=(ModuleSpec("A", ("x",)),), losses=(Loss("y", "x"),)),
         "not a module or merge"),
        (lambda: ModuleSpec("A", "x"), "must be a sequence of names, got the string 'x'"),
    ],
)
def test_bad_assemblies_raise_config_errors_naming_the_problem(build, message):
    with pytest.raises(ConfigError, match=None) as info:
        build()
    assert message in str(info.value)


def test_markdown_table_has_one_row_per_module():
    text = format_dependency_table(dependencies(nmn_assembly()), markdown=True)
    lines = text.splitlines()
    assert lines[0].startswith("| module | input: decoupled") and len(lines) == 2 + 4
    assert lines[2] == "| find | ✓ |  |  | ✓ |  |"
