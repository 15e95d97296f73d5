"""The NMN modules of the reasoning-chain families (``same``, ``equal``, ``compare``) and NMN training on them."""

import time

import pytest
import torch

from modnets.compose import Program
from modnets.data import ANSWERS, ClevrLikeConfig, collate_clevr_like, make_clevr_like
from modnets.errors import ConfigError
from modnets.hub import Hub
from modnets.models import Compare, Equal, QuestionVocabulary, Same, film, nmn, nmn_library
from modnets.train import Classification, FitConfig, RunDir, fit, predict
from modnets.types import HeatMap, Logits, Mask, Probs

N = len(ANSWERS)


@pytest.fixture(scope="module")
def clevr():
    config = ClevrLikeConfig(n_examples=96, depths=(2, 4, 7, 11), image_size=32, seed=1, programs="clevr")
    return make_clevr_like(config)


@pytest.mark.parametrize("typed", [True, False])
def test_signatures(typed):
    lib = nmn_library(typed, grid=(8, 8))
    mask, answer = (Mask(), Probs(N)) if typed else (HeatMap(), Logits(N))
    assert lib.signature("same").inputs == (("mask", mask),) and lib.signature("same").output == mask
    for name in ("equal", "compare"):
        assert lib.signature(name).inputs == (("a", mask), ("b", mask)) and lib.signature(name).output == answer
    assert [n for n, _ in lib.signature("same").context] == ["features"]
    assert lib["same"].arguments == lib["equal"].arguments == ("color", "shape", "size")
    assert lib["compare"].arguments == ("equal", "more", "fewer")
    assert lib.check(Program.parse("equal[size](find[cube], same[color](and(find[red], find[large])))")) == answer
    assert lib.check(Program.parse("compare[more](relate[left](find[red]), find[cube])")) == answer


def test_library_reasoning_modules_are_optional():
    assert {"same", "equal", "compare"} <= set(nmn_library(grid=(4, 4)).names)
    assert not {"same", "equal", "compare"} & set(nmn_library(grid=(4, 4), reasoning=()).names)
    assert set(nmn_library(grid=(4, 4), reasoning=("compare",)).names) & {"same", "equal"} == set()
    with pytest.raises(ConfigError, match="reasoning must be a subset"):
        nmn_library(reasoning=("same", "negate"))
    with pytest.raises(ConfigError, match="classes"):
        Same(["color"], channels=4, mask=Mask(), classes=1)


def test_shapes_and_value_ranges():
    torch.manual_seed(0)
    b, c, h, w = 5, 6, 4, 4
    features, a, bmap = torch.randn(b, c, h, w), torch.rand(b, h, w), torch.rand(b, h, w)
    arg = torch.tensor([0, 1, 2, 0, 1])
    same = Same(["color", "shape", "size"], channels=c, mask=Mask())
    out = same(a, arg=arg, features=features)
    assert out.shape == (b, h, w) and 0 <= out.min() and out.max() <= 1
    equal = Equal(["color", "shape", "size"], channels=c, hidden=8, n_answers=N, mask=Mask(), answer=Probs(N))
    compare = Compare(["equal", "more", "fewer"], hidden=8, n_answers=N, mask=Mask(), answer=Probs(N))
    for module, kwargs in ((equal, {"features": features}), (compare, {})):
        probs = module(a, bmap, arg=arg, **kwargs)
        assert probs.shape == (b, N)
        torch.testing.assert_close(probs.sum(1), torch.ones(b))
    untyped = Compare(["equal", "more", "fewer"], hidden=8, n_answers=N, mask=HeatMap(), answer=Logits(N))
    assert untyped(a * 3, bmap, arg=arg).shape == (b, N)


def test_equal_is_symmetric_compare_is_not():
    torch.manual_seed(0)
    features, a, b = torch.randn(3, 6, 4, 4), torch.rand(3, 4, 4), torch.rand(3, 4, 4)
    arg = torch.tensor([0, 1, 2])
    equal = Equal(["color", "shape", "size"], channels=6, hidden=8, n_answers=N, mask=Mask(), answer=Probs(N))
    torch.testing.assert_close(equal(a, b, arg=arg, features=features), equal(b, a, arg=arg, features=features))
    compare = Compare(["equal", "more", "fewer"], hidden=8, n_answers=N, mask=Mask(), answer=Probs(N))
    assert not torch.allclose(compare(a, b, arg=arg), compare(b, a, arg=arg))


def test_same_scores_cells_like_the_attended_object_and_leaves_the_object_out():
    """Three cells with the features of the attended object (one of them attended): the two others score
    alike, the attended one lower; the class-probability score is the same for all three."""
    torch.manual_seed(0)
    same = Same(["color"], channels=5, mask=Mask())
    features = torch.randn(1, 5, 3, 3)
    for cell in ((0, 2), (2, 1)):
        features[0, :, cell[0], cell[1]] = features[0, :, 0, 0]
    mask = torch.full((1, 3, 3), 1e-3)
    mask[0, 0, 0] = 1 - 1e-3
    with torch.no_grad():
        out = same(mask, arg=torch.tensor([0]), features=features)[0]
    assert out[0, 2].item() == pytest.approx(out[2, 1].item(), abs=1e-6)
    assert out[0, 0] < out[0, 2] - 0.3


def test_batched_execution_equals_per_example_on_clevr_programs(clevr):
    torch.manual_seed(0)
    model = nmn(True, image_size=32)
    features = model.stem(clevr.images[:32]).detach().requires_grad_(True)
    programs = clevr.programs[:32]
    assert {"same", "equal", "compare"} <= {c.name for p in programs for c in p.postorder()}
    out = model.library(programs, features=features)
    ref = model.library.execute_each(programs, features=features)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    grad = torch.autograd.grad(out.square().sum(), features)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(ref.square().sum(), features)[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("typed", [True, False])
def test_training_on_clevr_programs_lowers_the_loss(clevr, typed):
    torch.manual_seed(0)
    model = nmn(typed, image_size=32)
    batch = collate_clevr_like([clevr[i] for i in range(len(clevr))])
    objective = Classification(model, target="answer")
    before = objective.loss(batch)["loss"].item()
    fit(objective, clevr, config=FitConfig(epochs=5, batch_size=32, lr=3e-3), collate=collate_clevr_like,
        run=RunDir(progress=False))
    assert objective.loss(batch)["loss"].item() < before - 0.3


def test_film_and_the_question_prior_read_every_word_of_chain_questions(clevr):
    vocab = QuestionVocabulary.build(clevr.questions)
    assert {"same", "fewer", "many", "have"} <= set(vocab.words)
    assert (vocab.encode(clevr.questions).tokens != 1).all()  # no unknown word
    model = film(vocab, image_size=32)
    batch = collate_clevr_like([clevr[i] for i in range(8)])
    assert model(batch["image"], batch["question"]).shape == (8, N)
    prior = nmn(True, image_size=32, prior="logits", questions=vocab)
    assert prior.scores(batch).log_probs.shape == (8, N)


@pytest.mark.parametrize("name", ["same", "equal", "compare"])
def test_hub_round_trip(tmp_path, name):
    torch.manual_seed(0)
    module = nmn_library(True, channels=6, hidden=8, grid=(4, 4))[name]
    Hub(tmp_path).save(module, name)
    loaded = Hub(tmp_path).load(name)
    assert type(loaded) is type(module) and loaded.signature == module.signature
    features, a, b = torch.randn(2, 6, 4, 4), torch.rand(2, 4, 4), torch.rand(2, 4, 4)
    inputs = (a,) if name == "same" else (a, b)
    context = {} if name == "compare" else {"features": features}
    arg = torch.tensor([0, 2])
    torch.testing.assert_close(loaded(*inputs, arg=arg, **context), module(*inputs, arg=arg, **context))


@pytest.mark.slow
def test_error_grows_with_depth_when_trained_on_every_depth():
    """The thesis Fig. 4.12 reference curve: a typed NMN trained on every depth 2-12 of the ``chains`` family
    answers the deepest questions worse than the shallowest ones."""
    torch.manual_seed(0)
    config = dict(image_size=32, programs="chains")
    train = make_clevr_like(ClevrLikeConfig(n_examples=20000, depths=tuple(range(2, 13)), seed=0, **config))
    test = make_clevr_like(ClevrLikeConfig(n_examples=1000, depths=(2, 3, 10, 11, 12), seed=10_000, **config))
    objective = Classification(nmn(True, image_size=32), target="answer")
    start = time.perf_counter()
    fit(objective, train, config=FitConfig(epochs=100, batch_size=64, lr=3e-3, max_seconds=300),
        collate=collate_clevr_like, run=RunDir(progress=False))
    wrong = predict(objective, test, collate=collate_clevr_like) != test.answers
    error = {d: float(wrong[test.depths == d].float().mean()) for d in (2, 3, 10, 11, 12)}
    shallow, deep = (error[2] + error[3]) / 2, (error[10] + error[11] + error[12]) / 3
    print(f"\ntrained {time.perf_counter() - start:.0f} s; error by depth {error}; 2-3: {shallow:.3f}, "
          f"10-12: {deep:.3f}")
    assert shallow < 0.3  # it learned
    assert deep > shallow + 0.04
