import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modnets import Program
from modnets.data import (
    EASY_VQA_ANSWERS,
    EASY_VQA_COLORS,
    EASY_VQA_KINDS,
    EASY_VQA_SHAPES,
    EasyVQADataset,
    load_easy_vqa,
    parse_easy_vqa_question,
)
from modnets.errors import ConfigError, DataUnavailableError, ProgramSyntaxError
from modnets.models import QuestionVocabulary, easy_vqa_library, film, nmn
from modnets.train import Classification, FitConfig, RunDir, fit, predict

easy_vqa = pytest.importorskip("easy_vqa")


@pytest.mark.parametrize(
    ("question", "program"),
    [
        ("what is the blue shape?", "describe[shape](find[blue])"),
        ("what color is the shape?", "describe[color](find[object])"),
        ("What is the color of the triangle?", "describe[color](find[triangle])"),
        ("what shape does the image contain?", "describe[shape](find[object])"),
        ("does the image contain a rectangle?", "exist(find[rectangle])"),
        ("is there a black shape?", "exist(find[black])"),
        ("does the image not contain a gray shape?", "not(exist(find[gray]))"),
        ("is no teal shape present?", "not(exist(find[teal]))"),
        ("is there not a circle in the image?", "not(exist(find[circle]))"),
        ("is there a red circle?", "exist(and(find[red], find[circle]))"),
    ],
)
def test_hand_checked_questions_give_the_expected_programs(question, program):
    assert parse_easy_vqa_question(question) == Program.parse(program)


TEMPLATES = {  # question template -> program template, {c}: a colour, {s}: a shape
    "is there a {c} shape in the image?": "exist(find[{c}])",
    "is there not a {s}?": "not(exist(find[{s}]))",
    "is no {c} {s} present?": "not(exist(and(find[{c}], find[{s}])))",
    "does the image contain a {s}?": "exist(find[{s}])",
    "what is the color of the {s}?": "describe[color](find[{s}])",
    "what is the {c} shape?": "describe[shape](find[{c}])",
}


@settings(max_examples=40, deadline=None)
@given(
    template=st.sampled_from(sorted(TEMPLATES)),
    colour=st.sampled_from(EASY_VQA_COLORS),
    shape=st.sampled_from(EASY_VQA_SHAPES),
    upper=st.booleans(),
)
def test_templates_parse_to_their_programs_whatever_the_values_and_case(template, colour, shape, upper):
    question = template.format(c=colour, s=shape)
    expected = Program.parse(TEMPLATES[template].format(c=colour, s=shape))
    assert parse_easy_vqa_question(question.upper() if upper else question) == expected


@pytest.mark.parametrize(
    ("question", "reason", "position"),
    [
        ("is there a purple shape?", "unknown word 'purple'", 11),
        ("how many shapes are there?", "must start with 'what', 'is' or 'does', got 'how'", 0),
        ("is there a red shape or not?", "unknown word 'or'", 21),
        ("what is the circle?", "must ask for the color or the shape", 0),
        ("is there not no red shape?", "more than one negation", 13),
        ("is there a red blue shape?", "names two colours", 15),
        ("what color is not the shape?", "cannot be negated", 14),
        ("", "no words", 0),
    ],
)
def test_unparseable_questions_raise_with_the_question_and_the_position(question, reason, position):
    with pytest.raises(ProgramSyntaxError, match=reason) as err:
        parse_easy_vqa_question(question)
    assert err.value.text == question
    assert err.value.position == position


@pytest.mark.parametrize("split", ["train", "test"])
def test_parser_covers_every_real_question_and_agrees_with_the_answers(split):
    texts, answers, _ = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    assert len(texts) == {"train": 38_575, "test": 9_673}[split]
    assert set(answers) <= set(EASY_VQA_ANSWERS)
    lib = easy_vqa_library(grid=(8, 8))
    programs = [parse_easy_vqa_question(q) for q in texts]  # every question parses
    assert len(programs) == len(texts)
    for question, answer in set(zip(texts, answers, strict=True)):  # each distinct (question, answer) pair
        program = parse_easy_vqa_question(question)
        lib.check(program)  # every program runs on the easy-vqa modules
        if program.name == "describe":
            assert answer in (EASY_VQA_COLORS if program.arg == "color" else EASY_VQA_SHAPES), question
            leaf = program.children[0].arg
            assert leaf == "object" or (leaf in EASY_VQA_COLORS) != (program.arg == "color"), question
        else:
            assert answer in ("yes", "no"), question


def test_loader_gives_clevr_like_batches_that_nmn_and_film_run_on():
    ds = load_easy_vqa("test", image_size=32, limit=40)
    assert isinstance(ds, EasyVQADataset) and len(ds) == 40
    assert ds.images.shape[0] == len(set(ds.image_ids.tolist())) < 40  # images are stored once
    batch = ds.collate([ds[i] for i in range(len(ds))])
    assert {"image", "program", "answer", "question", "index", "depth", "kind"} <= set(batch)
    assert batch["image"].shape == (40, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1 and batch["image"].std() > 0.05
    texts, answers, ids = easy_vqa.get_test_questions()
    assert batch["question"] == texts[:40]
    assert [EASY_VQA_ANSWERS[a] for a in batch["answer"].tolist()] == answers[:40]
    assert ds.image_ids.tolist() == ids[:40]
    for kind, program in zip(batch["kind"].tolist(), batch["program"], strict=True):
        assert EASY_VQA_KINDS[kind] == (program.arg if program.name == "describe" else "yes/no")
    model = nmn(True, image_size=32, library=easy_vqa_library)
    assert model(batch["image"], batch["program"]).shape == (40, len(EASY_VQA_ANSWERS))
    baseline = film(QuestionVocabulary.build(ds.questions), image_size=32, n_answers=len(EASY_VQA_ANSWERS))
    assert baseline.predict(batch).shape == (40,)
    sub = ds.subset([3, 1])
    assert sub.questions == [ds.questions[3], ds.questions[1]]
    torch.testing.assert_close(sub[0]["image"], ds[3]["image"])


def test_loader_errors(monkeypatch):
    with pytest.raises(ConfigError, match="split must be one of \\('train', 'test'\\), got 'val'"):
        load_easy_vqa("val")
    with pytest.raises(ConfigError, match="image_size must be an int >= 8, got 4"):
        load_easy_vqa("test", image_size=4)
    monkeypatch.setitem(sys.modules, "easy_vqa", None)  # as if the package were not installed
    with pytest.raises(DataUnavailableError, match="pip install easy-vqa"):
        load_easy_vqa("test")


def test_typed_nmn_trained_briefly_beats_the_majority_answer():
    torch.manual_seed(0)
    train = load_easy_vqa("train", image_size=32, limit=600)
    test = load_easy_vqa("test", image_size=32, limit=500)
    model = nmn(True, image_size=32, channels=(16, 32), hidden=32, library=easy_vqa_library)
    fit(Classification(model, target="answer"), train, config=FitConfig(epochs=2, batch_size=32, lr=3e-3),
        collate=train.collate, run=RunDir(progress=False))
    accuracy = (predict(model, test, collate=test.collate) == test.answers).float().mean().item()
    assert accuracy > test.majority_accuracy() + 0.15, (accuracy, test.majority_accuracy())
