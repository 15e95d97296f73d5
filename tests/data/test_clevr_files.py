"""``load_clevr`` on a miniature CLEVR folder written in the real layout."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from modnets.data import ANSWERS, CLEVR_FUNCTIONS, ClevrDataset, collate_clevr_like, execute, load_clevr
from modnets.errors import ConfigError, DataUnavailableError, UnknownNameError
from modnets.models import nmn, nmn_library


def node(function, inputs=(), value=None):
    return {"function": function, "inputs": list(inputs), "value_inputs": [] if value is None else [value]}


def obj(color, shape, size, x, y):
    return {"color": color, "shape": shape, "size": size, "material": "rubber", "rotation": 12.5,
            "3d_coords": [0.0, 0.0, 0.35], "pixel_coords": [x, y, 11.2]}


SCENES = [  # pixel_coords in CLEVR's 480 x 320 frame
    [obj("red", "cube", "large", 100, 200), obj("blue", "sphere", "small", 300, 100),
     obj("green", "cylinder", "small", 400, 250)],
    [obj("yellow", "sphere", "large", 240, 160), obj("gray", "cube", "small", 100, 80)],
    [obj("cyan", "cylinder", "large", 200, 200)],
]

S = node("scene")
QUESTIONS = [  # (image, question, CLEVR program, answer)
    (0, "Is there a red thing?", [S, node("filter_color", [0], "red"), node("exist", [1])], "yes"),
    (0, "How many objects are there?", [S, node("count", [0])], "3"),
    (0, "What shape is the thing left of the blue thing?",
     [S, node("filter_color", [0], "blue"), node("unique", [1]), node("relate", [2], "left"), node("unique", [3]),
      node("query_shape", [4])], "cube"),
    (0, "What color is the small cylinder?",
     [S, node("filter_shape", [0], "cylinder"), node("filter_size", [1], "small"), node("unique", [2]),
      node("query_color", [3])], "green"),
    (0, "How many large things are in front of the sphere?",
     [S, node("filter_shape", [0], "sphere"), node("unique", [1]), node("relate", [2], "front"), S,
      node("filter_size", [4], "large"), node("intersect", [3, 5]), node("count", [6])], "1"),
    (0, "Is there a purple thing or a thing behind the green thing?",
     [S, node("filter_color", [0], "purple"), S, node("filter_color", [2], "green"), node("unique", [3]),
      node("relate", [4], "behind"), node("union", [1, 5]), node("exist", [6])], "yes"),
    (1, "What size is the thing right of the cube?",
     [S, node("filter_shape", [0], "cube"), node("unique", [1]), node("relate", [2], "right"), node("unique", [3]),
      node("query_size", [4])], "large"),
    (1, "Is there a brown thing?",  # the question generator's keys
     [{"type": "scene", "inputs": [], "side_inputs": []},
      {"type": "filter_color", "inputs": [0], "side_inputs": ["brown"]},
      {"type": "exist", "inputs": [1], "side_inputs": []}], "no"),
    (2, "What color is the thing?", [S, node("unique", [0]), node("query_color", [1])], "cyan"),
]
UNMAPPED = [  # questions the NMN library cannot express
    (0, "What material is the cube?",
     [S, node("filter_shape", [0], "cube"), node("unique", [1]), node("query_material", [2])], "rubber"),
    (0, "Are there as many cubes as spheres?",
     [S, node("filter_shape", [0], "cube"), node("count", [1]), S, node("filter_shape", [3], "sphere"),
      node("count", [4]), node("equal_integer", [2, 5])], "yes"),
]


def image_name(split, k):
    return f"CLEVR_{split}_{k:06d}.png"


def question_records(split, questions):
    return [{"question_index": q, "split": split, "image_index": k, "image_filename": image_name(split, k),
             "question": text, "program": program, "answer": answer, "question_family_index": 3}
            for q, (k, text, program, answer) in enumerate(questions)]


def write_clevr(root, split="val", questions=QUESTIONS, scenes=True):
    (root / "questions").mkdir(parents=True, exist_ok=True)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    info = {"split": split, "version": "1.0"}
    (root / "questions" / f"CLEVR_{split}_questions.json").write_text(
        json.dumps({"info": info, "questions": question_records(split, questions)}))
    rng = np.random.default_rng(0)
    for k in range(len(SCENES)):
        pixels = rng.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)  # a 480 x 320 render, scaled down
        Image.fromarray(pixels).save(root / "images" / split / image_name(split, k))
    if scenes:
        (root / "scenes").mkdir(exist_ok=True)
        records = [{"split": split, "image_index": k, "image_filename": image_name(split, k), "objects": objects,
                    "relationships": {}, "directions": {}} for k, objects in enumerate(SCENES)]
        (root / "scenes" / f"CLEVR_{split}_scenes.json").write_text(json.dumps({"info": info, "scenes": records}))
    return root


@pytest.fixture
def clevr(tmp_path):
    return write_clevr(tmp_path / "CLEVR_v1.0")


def test_the_questions_cover_every_mapped_function():
    used = {n.get("function", n.get("type")) for _, _, program, _ in QUESTIONS for n in program}
    assert used == set(CLEVR_FUNCTIONS)


def test_load_clevr_converts_programs_answers_and_scenes(clevr):
    ds = load_clevr(clevr, "val", image_size=32)
    assert isinstance(ds, ClevrDataset) and len(ds) == len(QUESTIONS) and ds.skipped == 0
    assert len(ds.image_paths) == 3 and ds.image_indices.tolist() == [k for k, *_ in QUESTIONS]
    assert [ANSWERS[a] for a in ds.answers.tolist()] == [a for *_, a in QUESTIONS]
    assert ds.questions == [q for _, q, _, _ in QUESTIONS]
    assert ds.depths.tolist() == [p.depth for p in ds.programs]
    library = nmn_library(True, grid=(8, 8))
    for program, scene, answer in zip(ds.programs, ds.scenes, ds.answers.tolist(), strict=True):
        library.check(program)
        # the converted program, run symbolically on the converted scene, gives CLEVR's answer
        assert execute(program, scene) == ANSWERS[answer]


def test_examples_batch_and_run_through_the_nmn(clevr):
    ds = load_clevr(clevr, "val", image_size=32)
    item = ds[-1]
    assert set(item) == {"index", "image", "program", "answer", "depth", "question"} and item["index"] == len(ds) - 1
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    batch = next(iter(DataLoader(ds, batch_size=len(ds), collate_fn=collate_clevr_like)))
    assert batch["image"].shape == (len(ds), 3, 32, 32) and batch["answer"].shape == (len(ds),)
    model = nmn(True, image_size=32)
    probs = model(batch["image"], batch["program"])
    assert probs.shape == (len(ds), len(ANSWERS))
    assert torch.allclose(probs.sum(-1), torch.ones(len(ds)), atol=1e-5)
    loss = torch.nn.functional.nll_loss(probs.clamp_min(1e-9).log(), batch["answer"])
    loss.backward()  # the whole batch of converted programs is differentiable
    assert all(p.grad is not None for p in model.stem.parameters())


def test_images_are_read_on_access_and_resized(clevr):
    ds = load_clevr(clevr, "val", image_size=16)
    stored = np.asarray(Image.open(ds.image_paths[0]).convert("RGB"), dtype=np.float32) / 255.0  # (32, 48, 3)
    image = ds[0]["image"]
    assert image.shape == (3, 16, 16)
    assert abs(float(image.mean()) - float(stored.mean())) < 0.02  # resizing keeps the average colour
    ds.image_paths[0].unlink()
    with pytest.raises(DataUnavailableError, match="CLEVR_val_000000.png"):
        ds[0]


def test_limit_subset_and_no_scenes(tmp_path):
    root = write_clevr(tmp_path, scenes=False)
    ds = load_clevr(root, "val", image_size=16, limit=4)
    assert len(ds) == 4 and ds.scenes is None and len(ds.image_paths) == 1
    part = ds.subset([3, 1])
    assert part.questions == [ds.questions[3], ds.questions[1]] and part[0]["program"] == ds.programs[3]


def test_cogent_and_closure_layouts(tmp_path):
    write_clevr(tmp_path, split="valB")
    assert len(load_clevr(tmp_path, "valB", image_size=16)) == len(QUESTIONS)
    # CLOSURE: a question file of its own, about the images of the val split
    write_clevr(tmp_path, split="val")
    (tmp_path / "questions" / "CLEVR_closure_questions.json").write_text(
        json.dumps({"questions": question_records("val", QUESTIONS[:2])}))
    ds = load_clevr(tmp_path, "closure", image_size=16, image_split="val")
    assert len(ds) == 2 and ds.scenes is None and ds[0]["image"].shape == (3, 16, 16)


def test_an_unmapped_function_raises_or_is_skipped(tmp_path):
    root = write_clevr(tmp_path, questions=QUESTIONS[:2] + UNMAPPED)
    with pytest.raises(UnknownNameError, match="question 2: .*'query_material' has no NMN counterpart") as info:
        load_clevr(root, "val")
    assert "CLEVR_val_questions.json" in str(info.value) and "skip_unmapped=True" in str(info.value)
    ds = load_clevr(root, "val", image_size=16, skip_unmapped=True)
    assert len(ds) == 2 and ds.skipped == 2


def test_an_answer_outside_the_vocabulary_raises(tmp_path):
    k, text, program, _ = QUESTIONS[3]
    root = write_clevr(tmp_path, questions=[QUESTIONS[0], (k, text, program, "rubber")])
    with pytest.raises(UnknownNameError, match="question 1: answer 'rubber' is not in the NMN answer vocabulary"):
        load_clevr(root, "val")
    assert len(load_clevr(root, "val", skip_unmapped=True)) == 1


def edit_questions(root, change):
    path = root / "questions" / "CLEVR_val_questions.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "questions" / "CLEVR_val_questions.json").unlink(),
         "questions file .*CLEVR_val_questions.json is missing"),
        (lambda root: (root / "questions" / "CLEVR_val_questions.json").write_text('{"questions": [{"q'),
         "CLEVR_val_questions.json is not readable JSON"),
        (lambda root: (root / "questions" / "CLEVR_val_questions.json").write_text('[1, 2]'),
         "CLEVR_val_questions.json must hold an object with a 'questions' list"),
        (lambda root: edit_questions(root, lambda d: [q.pop("program") for q in d["questions"]]),
         "question 0 lacks \\['program'\\] \\(CLEVR's test split ships without programs and answers\\)"),
        (lambda root: edit_questions(root, lambda d: d["questions"][1]["program"][1].update(inputs=[5])),
         "question 1 has a malformed program: node 1: .*earlier node"),
        (lambda root: edit_questions(root, lambda d: d["questions"][2].update(image_index=-1)),
         "question 2: 'image_index' must be an int >= 0"),
        (lambda root: edit_questions(root, lambda d: d["questions"][2].update(image_filename="../x.png")),
         "question 2: 'image_filename' must be a file name"),
        (lambda root: (root / "images" / "val" / "CLEVR_val_000002.png").unlink(),
         "CLEVR image .*CLEVR_val_000002.png is missing"),
        (lambda root: [p.unlink() for p in (root / "images" / "val").iterdir()] and (root / "images" / "val").rmdir(),
         "CLEVR image folder .*images/val is missing"),
        (lambda root: (root / "scenes" / "CLEVR_val_scenes.json").write_text('{"scenes": [{"objects": []}]}'),
         "CLEVR_val_scenes.json: scene 0 must be an object with 'image_index' and 'objects'"),
        (lambda root: (root / "scenes" / "CLEVR_val_scenes.json").write_text('{"scenes": []}'),
         "CLEVR_val_scenes.json has no scene with image_index 0"),
        (lambda root: (root / "scenes" / "CLEVR_val_scenes.json").write_text(
            json.dumps({"scenes": [{"image_index": 0, "objects": [obj("pink", "cube", "large", 1, 2)]}]})),
         "object 0 has color 'pink'; accepted: gray, red"),
    ],
)
def test_missing_or_malformed_files_raise_naming_the_file(clevr, damage, message):
    damage(clevr)
    with pytest.raises(DataUnavailableError, match=message):
        load_clevr(clevr, "val")


def test_an_unreadable_image_raises_on_access(clevr):
    (clevr / "images" / "val" / "CLEVR_val_000001.png").write_bytes(b"not a png")
    ds = load_clevr(clevr, "val", image_size=16)
    with pytest.raises(DataUnavailableError, match="CLEVR_val_000001.png cannot be read as an image"):
        ds[6]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"image_size": 4}, "image_size"), ({"limit": 0}, "limit"), ({"split": "../val"}, "split")],
)
def test_bad_arguments_raise_config_errors(clevr, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_clevr(clevr, **{"split": "val", **kwargs})
