import collections
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from modnets.compose import Program
from modnets.data import (
    ANSWERS,
    COLORS,
    SHAPES,
    SIZES,
    ClevrLikeConfig,
    ClevrLikeDataset,
    Scene,
    collate_clevr_like,
    execute,
    generate_program,
    make_clevr_like,
    program_to_question,
    render_scenes,
    sample_scene,
)
from modnets.data._clevr_scene import SIZE_RADIUS
from modnets.errors import ConfigError, UnknownNameError


@pytest.fixture(scope="module")
def small() -> ClevrLikeDataset:
    return make_clevr_like(ClevrLikeConfig(n_examples=300, depths=(2, 3, 5, 8), image_size=32, seed=3))


@pytest.fixture(scope="module")
def balanced() -> ClevrLikeDataset:
    return make_clevr_like(ClevrLikeConfig(n_examples=2000, depths=(2, 3, 4, 5), image_size=32, seed=1))


def _scene() -> Scene:
    # A red small cube top-left, a green small sphere in the middle-left, a blue large sphere at the
    # bottom, a red large cylinder on the right.
    return Scene.from_objects(
        [
            {"color": "red", "shape": "cube", "size": "small", "x": 0.2, "y": 0.2},
            {"color": "blue", "shape": "sphere", "size": "large", "x": 0.5, "y": 0.8},
            {"color": "red", "shape": "cylinder", "size": "large", "x": 0.8, "y": 0.5},
            {"color": "green", "shape": "sphere", "size": "small", "x": 0.35, "y": 0.5},
        ]
    )


def run(text: str, scene: Scene | None = None) -> str:
    return execute(Program.parse(text), scene or _scene())


# ------------------------------------------------------------------------------------------ determinism
def test_same_config_gives_identical_data():
    cfg = ClevrLikeConfig(n_examples=60, depths=(2, 4, 6), image_size=32, seed=7)
    a, b = make_clevr_like(cfg), make_clevr_like(ClevrLikeConfig.from_dict(cfg.to_dict()))
    assert torch.equal(a.images, b.images)
    assert a.programs == b.programs and a.questions == b.questions
    assert torch.equal(a.answers, b.answers) and torch.equal(a.depths, b.depths)
    c = make_clevr_like(ClevrLikeConfig(n_examples=60, depths=(2, 4, 6), image_size=32, seed=8))
    assert not torch.equal(a.images, c.images)
    assert a.programs != c.programs


# ------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("size", [32, 64])
def test_shapes_dtypes_and_ranges(size):
    ds = make_clevr_like(ClevrLikeConfig(n_examples=20, depths=(2, 3), image_size=size, seed=0))
    n = len(ds)
    assert n == 20
    assert ds.images.shape == (n, 3, size, size) and ds.images.dtype == torch.float32
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds.answers.shape == (n,) and ds.answers.dtype == torch.long
    assert 0 <= int(ds.answers.min()) and int(ds.answers.max()) < len(ANSWERS)
    assert ds.depths.dtype == torch.long and set(ds.depths.tolist()) <= {2, 3}
    assert len(ds.programs) == len(ds.questions) == len(ds.scenes) == n
    # Examples that share a scene share the image.
    for i in range(n):
        j = int((ds.scene_ids == ds.scene_ids[i]).nonzero()[0])
        assert ds.scenes[i] is ds.scenes[j] and torch.equal(ds.images[i], ds.images[j])


def test_item_collate_loader_and_subset(small):
    item = small[5]
    assert set(item) == {"index", "image", "program", "answer", "depth", "question"}
    assert item["index"] == 5 and item["image"].shape == (3, 32, 32)
    assert isinstance(item["program"], Program) and isinstance(item["answer"], int)
    assert item["depth"] == item["program"].depth and item["question"] == small.questions[5]
    assert small[-1]["index"] == len(small) - 1
    with pytest.raises(IndexError):
        small[len(small)]

    batch = ClevrLikeDataset.collate([small[i] for i in (0, 3, 4)])
    assert batch["index"].tolist() == [0, 3, 4] and batch["index"].dtype == torch.long
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["answer"].tolist() == small.answers[[0, 3, 4]].tolist()
    assert batch["depth"].dtype == torch.long and batch["program"][1] == small.programs[3]
    assert batch["question"] == [small.questions[i] for i in (0, 3, 4)]

    loader = DataLoader(small, batch_size=64, shuffle=False, collate_fn=collate_clevr_like)
    first = next(iter(loader))
    assert first["image"].shape == (64, 3, 32, 32) and first["index"].tolist() == list(range(64))

    sub = small.subset([7, 2, 9])
    assert len(sub) == 3 and sub.programs == [small.programs[i] for i in (7, 2, 9)]
    assert torch.equal(sub.images[1], small.images[2])
    assert sub.answers.tolist() == small.answers[[7, 2, 9]].tolist()
    mask = small.depths == 2
    assert len(small.subset(mask)) == int(mask.sum())
    with pytest.raises(ConfigError, match="at least one"):
        collate_clevr_like([])


# ------------------------------------------------------------------------------------------ programs
def test_programs_have_the_requested_depth_parse_back_and_match_execution(small):
    assert collections.Counter(small.depths.tolist()).keys() == {2, 3, 5, 8}
    for program, depth, answer, scene in zip(
        small.programs, small.depths.tolist(), small.answers, small.scenes, strict=True
    ):
        assert program.depth == depth
        assert Program.parse(str(program)) == program
        assert ANSWERS[int(answer)] == execute(program, scene)
        assert program.name in ("exist", "count", "describe")
        assert all(c.name in ("find", "relate", "and", "or") for c in program.children[0].postorder())


@pytest.mark.parametrize("depth", [2, 7, 12, 20])
def test_generate_program_exact_depth(depth):
    rng = np.random.default_rng(depth)
    for _ in range(10):
        scene = sample_scene(rng)
        for kind in ("exist", "count", "describe", None):
            p = generate_program(rng, scene, depth, kind=kind)
            assert p.depth == depth
            assert p.name == kind or kind is None
            assert execute(p, scene) in ANSWERS


def test_deep_data_set():
    ds = make_clevr_like(ClevrLikeConfig(n_examples=60, depths=(12,), image_size=32, seed=2))
    assert set(ds.depths.tolist()) == {12} and all(p.depth == 12 for p in ds.programs)
    for p, a, s in zip(ds.programs, ds.answers, ds.scenes, strict=True):
        assert ANSWERS[int(a)] == execute(p, s)


def test_depth_below_two_is_rejected():
    with pytest.raises(ConfigError, match="depth"):
        generate_program(np.random.default_rng(0), _scene(), 1)
    with pytest.raises(ConfigError, match="depths"):
        ClevrLikeConfig(n_examples=10, depths=(1, 3))


# ------------------------------------------------------------------------------------------ semantics
def test_find_count_exist_describe():
    assert run("count(find[red])") == "2"
    assert run("count(find[sphere])") == "2"
    assert run("count(find[large])") == "2"
    assert run("exist(find[yellow])") == "no"
    assert run("exist(find[green])") == "yes"
    assert run("describe[shape](find[green])") == "sphere"
    assert run("describe[size](find[cube])") == "small"
    assert run("describe[color](find[cylinder])") == "red"
    assert run("count(find[purple])") == "0"


def test_relate_means_relative_to_some_object_of_the_set():
    # Spheres at x = 0.5 and 0.35: left of some sphere = x < 0.5 -> cube (0.2) and green sphere (0.35).
    assert run("count(relate[left](find[sphere]))") == "2"
    assert run("exist(relate[left](find[cube]))") == "no"  # the cube is the leftmost object
    # Right of the green sphere (x = 0.35): blue sphere and cylinder, never the green sphere itself.
    assert run("count(relate[right](find[green]))") == "2"
    assert run("count(and(relate[right](find[green]), find[green]))") == "0"
    # Rows grow downwards: above the cylinder (y = 0.5) is only the cube (y = 0.2).
    assert run("describe[shape](relate[above](find[cylinder]))") == "cube"
    assert run("count(relate[below](find[cube]))") == "3"
    assert run("describe[color](relate[below](find[large]))") == "blue"
    assert run("count(relate[left](find[yellow]))") == "0"  # relate of the empty set


def test_and_or():
    assert run("describe[shape](and(find[red], find[large]))") == "cylinder"
    assert run("count(or(find[green], find[cube]))") == "2"
    assert run("count(or(find[red], find[large]))") == "3"
    assert run("count(and(find[small], relate[left](find[blue])))") == "2"
    assert run("exist(and(find[blue], find[small]))") == "no"


def test_bad_programs_raise():
    with pytest.raises(ConfigError, match="exactly one object"):
        run("describe[color](find[red])")
    with pytest.raises(ConfigError, match="root"):
        run("find[red]")
    with pytest.raises(ConfigError, match="root"):
        run("count(exist(find[red]))")
    with pytest.raises(UnknownNameError, match="filter"):
        run("count(filter[red])")
    with pytest.raises(UnknownNameError, match="circle"):
        run("count(find[circle])")
    with pytest.raises(ConfigError, match="2 inputs"):
        run("count(and(find[red]))")


# ------------------------------------------------------------------------------------------ questions
def test_question_text():
    p = Program.parse("exist(and(find[red], relate[left](find[cube])))")
    assert program_to_question(p) == "is there a red thing that is left of a cube?"
    assert program_to_question(Program.parse("count(find[sphere])")) == "how many spheres are there?"
    assert program_to_question(Program.parse("describe[size](or(find[cube], find[red]))")) == (
        "what size is the thing that is either a cube or a red thing?"
    )


def test_questions_mention_every_call(small):
    rel_text = {"left": "left of", "right": "right of", "above": "above", "below": "below"}
    for program, question in zip(small.programs, small.questions, strict=True):
        assert question == program_to_question(program)
        calls = list(program.postorder())
        for c in calls:
            if c.name == "find":
                assert c.arg in question
        n_rel = question.count(" of a ") + question.count("above a ") + question.count("below a ")
        assert n_rel >= sum(c.name == "relate" for c in calls)
        assert question.count("either") == sum(c.name == "or" for c in calls)
        for c in calls:
            if c.name == "relate":
                assert rel_text[c.arg] in question


# ------------------------------------------------------------------------------------------ balance
def test_balanced_answer_distribution(balanced):
    ds = balanced
    answers = [ANSWERS[int(a)] for a in ds.answers]
    overall = collections.Counter(answers)
    top_share = overall.most_common(1)[0][1] / len(ds)
    by_root: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for p, a in zip(ds.programs, answers, strict=True):
        by_root[p.key].update([a])
    shares = {k: max(c.values()) / sum(c.values()) for k, c in by_root.items()}
    print(f"\noverall top answer share {top_share:.3f}; per root module: {shares}")
    assert top_share <= 0.20
    assert shares["exist"] <= 0.55
    assert abs(by_root["exist"]["yes"] - by_root["exist"]["no"]) <= 1
    assert shares["count"] <= 0.15 and len(by_root["count"]) >= 10
    assert shares["describe[color]"] <= 0.20 and shares["describe[shape]"] <= 0.40
    assert shares["describe[size]"] <= 0.55
    kinds = collections.Counter(p.name for p in ds.programs)
    assert max(kinds.values()) - min(kinds.values()) <= 1


def test_unbalanced_generation_runs():
    ds = make_clevr_like(ClevrLikeConfig(n_examples=100, depths=(3,), image_size=32, balanced=False))
    assert len(ds) == 100 and all(
        ANSWERS[int(a)] == execute(p, s) for p, a, s in zip(ds.programs, ds.answers, ds.scenes, strict=True)
    )


# -------------------------------------------------------------------------------- scenes and rendering
def test_scenes_respect_object_counts_and_spacing():
    rng = np.random.default_rng(0)
    radius = np.asarray(SIZE_RADIUS)
    counts = set()
    for _ in range(200):
        s = sample_scene(rng, min_objects=3, max_objects=10)
        counts.add(s.n_objects)
        r = radius[s.size]
        d = np.hypot(s.x[:, None] - s.x[None], s.y[:, None] - s.y[None])
        off = ~np.eye(s.n_objects, dtype=bool)
        assert np.all(d[off] >= 0.89 * (r[:, None] + r[None])[off])
        assert np.all((s.x >= r) & (s.x <= 1 - r) & (s.y >= r) & (s.y <= 1 - r))
    assert counts == set(range(3, 11))


def test_changing_a_colour_changes_only_that_object():
    scene = _scene()
    before = render_scenes([scene], 48, rng=np.random.default_rng(0))[0]
    after = render_scenes([scene.with_object(3, color="yellow")], 48, rng=np.random.default_rng(0))[0]
    changed = np.abs(after - before).max(0) > 1e-6  # (H, W)
    assert changed.sum() > 20
    rows, cols = np.nonzero(changed)
    centres_y, centres_x = (rows + 0.5) / 48, (cols + 0.5) / 48
    # Every changed pixel lies on the recoloured object (a small sphere at (0.35, 0.5)).
    assert np.all(np.hypot(centres_x - 0.35, centres_y - 0.5) <= SIZE_RADIUS[0] + 1e-6)
    # ... and the object's centre pixel did change.
    assert changed[24, int(0.35 * 48)]


def test_background_and_shapes_are_distinguishable_at_32():
    def patch(shape: str, dx: float) -> np.ndarray:
        obj = {"color": "blue", "shape": shape, "size": "small", "x": 0.5 + dx, "y": 0.5}
        return render_scenes([Scene.from_objects([obj])], 32)[0][:, 11:21, 11:21]  # (3, 10, 10)

    background = render_scenes([Scene.from_objects([])], 32)[0][:, 11:21, 11:21]
    for dx in (0.0, 0.013):  # centred on a pixel and between pixels
        patches = {shape: patch(shape, dx) for shape in SHAPES}
        for a in SHAPES:
            for b in SHAPES:
                if a < b:
                    on_object = (np.abs(patches[a] - background) + np.abs(patches[b] - background)).max(0) > 0
                    diff = np.abs(patches[a] - patches[b]).max(0)[on_object].mean()
                    assert diff > 0.1, (a, b, dx, diff)
    empty = render_scenes([Scene.from_objects([])], 32)[0]
    assert np.allclose(empty, empty[:, :1, :1])  # a flat background without noise
    noisy = render_scenes([Scene.from_objects([])], 32, rng=np.random.default_rng(0))[0]
    assert 0.005 < float(np.abs(noisy - empty).mean()) < 0.05


def test_scene_validation():
    with pytest.raises(ConfigError, match="pink"):
        Scene.from_objects([{"color": "pink", "shape": "cube", "size": "small", "x": 0.5, "y": 0.5}])
    with pytest.raises(ConfigError, match="x"):
        Scene(color=[0], shape=[0], size=[0], x=[1.5], y=[0.5])
    s = _scene()
    assert s.objects()[2] == {"color": "red", "shape": "cylinder", "size": "large", "x": 0.8, "y": 0.5}
    assert s.with_object(0, size="large").objects()[0]["size"] == "large"
    assert set(COLORS) | set(SIZES) <= set(ANSWERS)


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "field, value",
    [
        ("n_examples", 0),
        ("depths", ()),
        ("depths", (2, 1)),
        ("depths", "23"),
        ("image_size", 8),
        ("min_objects", 0),
        ("max_objects", 11),
        ("balanced", "yes"),
        ("seed", -1),
        ("questions_per_scene", 0),
        ("depth_weights", (1.0, 2.0)),
        ("depth_weights", (1.0, 0.0, 1.0, 1.0)),
        ("depth_weights", "1234"),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field) as info:
        ClevrLikeConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_depth_weights_set_the_share_of_each_depth():
    data = make_clevr_like(ClevrLikeConfig(n_examples=600, depths=(2, 6), depth_weights=(3, 1), image_size=16,
                                           programs="chains", seed=4))
    share = (data.depths == 2).float().mean().item()
    assert 0.68 < share < 0.82  # 0.75 expected; 600 draws give a standard error of 0.018
    uniform = make_clevr_like(ClevrLikeConfig(n_examples=600, depths=(2, 6), image_size=16, programs="chains",
                                              seed=4))
    assert 0.42 < (uniform.depths == 2).float().mean().item() < 0.58
    again = ClevrLikeConfig.from_dict(json.loads(json.dumps(ClevrLikeConfig(depths=(2, 3), depth_weights=(1, 2))
                                                           .to_dict())))
    assert again.depth_weights == (1.0, 2.0)


def test_config_round_trip_and_min_max():
    cfg = ClevrLikeConfig(n_examples=5, depths=[2, 9], image_size=64, min_objects=3, max_objects=4, seed=11)
    assert cfg.depths == (2, 9)
    again = ClevrLikeConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ConfigError, match="max_objects"):
        ClevrLikeConfig(min_objects=5, max_objects=4)
    with pytest.raises(ConfigError, match="colour"):
        ClevrLikeConfig.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match="ClevrLikeConfig"):
        make_clevr_like({"n_examples": 3})
