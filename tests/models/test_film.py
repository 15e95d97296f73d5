import pytest
import torch

from modnets.data import ClevrLikeConfig, make_clevr_like
from modnets.errors import ShapeError
from modnets.models import FiLM, QuestionVocabulary, film, nmn
from modnets.train import Classification, FitConfig, RunDir, fit


@pytest.fixture(scope="module")
def data():
    return make_clevr_like(ClevrLikeConfig(n_examples=48, depths=(2, 3, 4), image_size=32, seed=7))


@pytest.fixture(scope="module")
def vocab(data):
    return QuestionVocabulary.build(data.questions)


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_film_answers_from_image_and_question_text_never_the_program(data, vocab):
    torch.manual_seed(0)
    model = film(vocab, image_size=32)
    batch = data.collate([data[i] for i in range(8)])
    del batch["program"]
    logits = model(batch["image"], batch["question"])
    assert logits.shape == (8, 26)
    assert model.predict(batch).shape == (8,)
    assert set(Classification(model, target="answer").loss(batch)) == {"loss", "accuracy"}
    with pytest.raises(ShapeError, match="FiLM got 8 images but 7 questions"):
        model(batch["image"], batch["question"][:7])


def test_film_is_sized_like_the_nmn_preset_with_a_prior(vocab):
    film_params = _params(film(vocab))
    nmn_params = _params(nmn(True, prior="logits", questions=vocab))
    assert 0.75 < film_params / nmn_params < 1.5, (film_params, nmn_params)


def test_question_modulates_every_block(data, vocab):
    torch.manual_seed(0)
    model = film(vocab, image_size=32).eval()
    torch.nn.init.normal_(model.film.weight, std=0.5)  # zero at initialisation: blocks start unconditioned
    images = data.images[:1].expand(2, -1, -1, -1)
    out = model(images, ["is there a red cube?", "what is the color of the big sphere?"])
    assert not torch.allclose(out[0], out[1])


def test_film_training_lowers_the_loss(data, vocab):
    torch.manual_seed(0)
    model = film(vocab, image_size=32, channels=(16, 32), width=16)
    assert isinstance(model, FiLM)
    batch = data.collate([data[i] for i in range(16)])
    objective = Classification(model, target="answer")
    before = objective.loss(batch)["loss"].item()
    result = fit(objective, data.subset(range(16)), config=FitConfig(epochs=8, batch_size=16, lr=1e-2),
                 collate=data.collate, run=RunDir(progress=False))
    model.eval()
    assert result.steps == 8
    assert objective.loss(batch)["loss"].item() < 0.6 * before
