"""The plan data model: what analysis fills and the stage runner reads."""

import modnets.analysis
import modnets.plan
from modnets.analysis import dependencies
from modnets.models import nmn_assembly
from modnets.plan import AuxiliaryNeed, Stage, SurrogateNeed, TrainingPlan


def test_analysis_re_exports_the_plan_types_themselves():
    for name in ("Assembly", "ModuleSpec", "Merge", "Loss", "Stage", "TrainingPlan", "AuxiliaryNeed",
                 "SurrogateNeed", "SAFE_MERGES", "CODEPENDENT_MERGES"):
        assert getattr(modnets.analysis, name) is getattr(modnets.plan, name), name


def test_the_nmn_plan_says_what_trains_when_from_what():
    plan = dependencies(nmn_assembly(True, prior=True)).plan
    assert isinstance(plan, TrainingPlan)
    assert plan.stages == (Stage(("encoder", "find"), (("encoder",), ("find",))),
                           Stage(("describe", "exist", "count"), (("describe",), ("exist",), ("count",))))
    assert plan.auxiliary == (AuxiliaryNeed("find", ("describe", "exist", "count"), ("answer",), after_stage=1),)
    assert plan.stage_of("count") == 2 and plan.stage_of("nothing") == 0
    assert plan.cached_inputs("exist") == ("find",) and plan.cached_inputs("find") == ()
    assert isinstance(plan.surrogate_for("find"), SurrogateNeed) and plan.surrogate_for("encoder") is None
