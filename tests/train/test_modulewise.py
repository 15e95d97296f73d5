import pytest
import torch

from modnets.analysis import dependencies
from modnets.compose import Program
from modnets.data import ClevrLikeConfig, make_clevr_like
from modnets.data import collate_clevr_like as collate
from modnets.errors import ConfigError
from modnets.models import QuestionVocabulary, nmn, nmn_assembly
from modnets.train import (
    AuxiliaryDataset,
    Classification,
    FitConfig,
    NMNModulewiseConfig,
    RunDir,
    nmn_find_unit,
    train_nmn_modulewise,
    validation_loss,
)


@pytest.fixture(scope="module")
def tiny():
    train = make_clevr_like(ClevrLikeConfig(n_examples=128, depths=(2, 3), image_size=16, seed=1))
    valid = make_clevr_like(ClevrLikeConfig(n_examples=64, depths=(2, 3), image_size=16, seed=2))
    return train, valid


def test_nmn_modulewise_trains_every_part_from_the_plan_and_the_cache(tiny, tmp_path):
    train, valid = tiny
    torch.manual_seed(0)
    model = nmn(True, image_size=16, hidden=16, prior="logits", questions=QuestionVocabulary.build(train.questions),
                question_hidden=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss_before = validation_loss(Classification(model, target="answer"), train, collate=collate)
    config = NMNModulewiseConfig(find=FitConfig(epochs=3, batch_size=32, lr=1e-2),
                                 heads=FitConfig(epochs=6, batch_size=32, lr=1e-2),
                                 prior=FitConfig(epochs=3, batch_size=32, lr=1e-2),
                                 search_trials=2, search_examples=64, sgm_rank=4)
    done = train_nmn_modulewise(model, train, plan=dependencies(nmn_assembly(True, prior=True)).plan,
                                collate=collate, run=RunDir(tmp_path, progress=False), config=config, valid=valid)
    assert done.run.stages == [["encoder", "find"], ["describe", "exist", "count"]]
    assert done.run.timings.parallel_seconds < done.run.timings.sequential_seconds
    assert set(done.run.timings.cache_seconds) == {"find"} and done.to_dict()["module_seconds"].keys() == {
        "encoder", "find", "describe", "exist", "count"}
    assert done.sgm_score is not None and done.sgm_score.n == len(valid)
    # every module searched with the same trial budget, then trained with its best learning rate
    assert set(done.searches) == {"encoder", "find", "describe", "exist", "count"}
    for name, found in done.searches.items():
        assert len(found.trials) == 2, name
        assert done.params[name]["lr"] == found.best_params["lr"]
    assert done.params["find"]["rank"] == done.searches["find"].best_params["rank"]
    after = model.state_dict()
    for prefix in ("stem.", "library.table.find.", "library.table.describe.", "library.table.exist.",
                   "library.table.count.", "question_prior."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix
    unit = nmn_find_unit(model)
    cache = AuxiliaryDataset(tmp_path / "cache" / "find", producer=unit)
    assert len(cache) == len(train) and cache.tensors["mask"].dtype == torch.float16
    assert (tmp_path / "checkpoints" / "describe").is_dir() and (tmp_path / "search" / "find" / "find.db").exists()
    assert (tmp_path / "search" / "describe" / "describe.db").exists()
    assert len(AuxiliaryDataset(tmp_path / "cache" / "find_valid", producer=unit)) == len(valid)
    assert validation_loss(Classification(model, target="answer"), train, collate=collate) < loss_before
    # resumed, the finished run runs no more trials and ends with the same choices and weights
    torch.manual_seed(0)
    again = nmn(True, image_size=16, hidden=16, prior="logits", questions=QuestionVocabulary.build(train.questions),
                question_hidden=16)
    redone = train_nmn_modulewise(again, train, plan=dependencies(nmn_assembly(True, prior=True)).plan,
                                  collate=collate, run=RunDir(tmp_path, resume=True, progress=False), config=config,
                                  valid=valid)
    assert all(len(found.trials) == 2 for found in redone.searches.values()) and redone.params == done.params
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in after.items())
    # ... and reports what the whole run cost, not the moments it took to resume: every module its search's
    # trials and its training, the cache what writing it took (the records agree to the checkpoint's rounding)
    first, resumed = done.run.timings, redone.run.timings
    for name, seconds in first.module_seconds.items():
        assert resumed.module_seconds[name] == pytest.approx(seconds, abs=0.05), name
        assert seconds >= done.searches[name].seconds > 0, name
    assert resumed.cache_seconds == first.cache_seconds and first.cache_seconds["find"] > 0
    assert resumed.sequential_seconds == pytest.approx(first.sequential_seconds, abs=0.3)
    assert first.sequential_seconds <= first.wall_seconds


def test_a_search_without_validation_data_is_refused(tiny, tmp_path):
    train, _ = tiny
    model = nmn(True, image_size=16, hidden=8)
    with pytest.raises(ConfigError, match="validation set"):
        train_nmn_modulewise(model, train, plan=dependencies(nmn_assembly(True)).plan, collate=collate,
                             run=RunDir(tmp_path, progress=False), config=NMNModulewiseConfig(search_trials=1))


def test_nmn_modulewise_refuses_a_plan_that_does_not_match_the_prior(tiny, tmp_path):
    train, _ = tiny
    model = nmn(True, image_size=16, hidden=8)
    with pytest.raises(ConfigError, match="question prior"):
        train_nmn_modulewise(model, train, plan=dependencies(nmn_assembly(True, prior=True)).plan,
                             collate=collate, run=RunDir(tmp_path, progress=False))


def test_the_sgm_target_of_a_negated_question_is_the_answer_before_negation():
    from modnets.data import EASY_VQA_ANSWERS
    from modnets.models import easy_vqa_library
    from modnets.train._nmn_modulewise import _Parts

    model = nmn(True, image_size=32, library=easy_vqa_library)
    parts = _Parts(model, ("describe", "exist", "count"))
    programs = [Program.parse("not(exist(find[red]))"), Program.parse("exist(find[red])")]
    yes = EASY_VQA_ANSWERS.index("yes")
    layouts = parts.layouts(programs)
    assert [lay.wrappers for lay in layouts] == [("not",), ()]
    target = parts.head_target(torch.tensor([yes, yes]), layouts, len(EASY_VQA_ANSWERS))
    assert target.tolist() == [EASY_VQA_ANSWERS.index("no"), yes]
    assert set(parts.unit) == {"stem", "find", "and", "or"} and parts.heads == ("describe", "exist")


def test_nmn_find_unit_is_the_stem_and_the_mask_modules_of_the_model():
    from modnets.train import nmn_find_unit

    model = nmn(True, image_size=32, hidden=16)
    unit = nmn_find_unit(model)
    assert unit["stem"] is model.stem and "find" in unit and "relate" in unit
    assert not any(name in unit for name in ("exist", "count", "describe"))
    shifted = {k: v + 1 if v.is_floating_point() else v for k, v in unit.state_dict().items()}
    unit.load_state_dict(shifted)  # the unit's modules are the model's own
    for key, value in model.stem.state_dict().items():
        assert torch.equal(value, shifted[f"stem.{key}"])


def test_a_frozen_unit_stays_fixed_while_the_rest_of_the_model_trains():
    from modnets.modules import freeze
    from modnets.train import nmn_find_unit

    model = nmn(True, image_size=32, hidden=16)
    unit = nmn_find_unit(model)
    before = {k: v.clone() for k, v in unit.state_dict().items()}
    freeze(*unit.values())
    model.train()
    images = torch.rand(4, 3, 32, 32)
    programs = [Program("exist", children=(Program("find", "red"),))] * 4
    model(images, programs).sum().backward()
    assert all(p.grad is None for p in unit.parameters())
    assert all(torch.equal(v, before[k]) for k, v in unit.state_dict().items())  # batch-norm statistics too
    assert any(p.grad is not None for p in model.library["exist"].parameters())
