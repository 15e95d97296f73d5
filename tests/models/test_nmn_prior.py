import pytest
import torch
import torch.nn.functional as F

from modnets.data import ClevrLikeConfig, make_clevr_like
from modnets.errors import ConfigError, ShapeError
from modnets.models import NMN, PRIOR_KEY, QuestionVocabulary, nmn
from modnets.train import Classification


@pytest.fixture(scope="module")
def data():
    return make_clevr_like(ClevrLikeConfig(n_examples=32, depths=(2, 3, 4), image_size=32, seed=5))


@pytest.fixture(scope="module")
def vocab(data):
    return QuestionVocabulary.build(data.questions)


def _batch(data, n=16):
    return data.collate([data[i] for i in range(n)])


@pytest.mark.parametrize("typed", [True, False])
def test_logits_prior_adds_the_prior_logits_to_the_root_logits(data, vocab, typed):
    torch.manual_seed(0)
    model = nmn(typed, image_size=32, prior="logits", questions=vocab)
    batch = _batch(data)
    s = model.scores(batch)
    root_logits = torch.log(s.root) if typed else s.root  # a typed Probs root contributes log-probabilities
    prior = model.question_prior(batch["question"])
    torch.testing.assert_close(s.prior, prior)
    torch.testing.assert_close(s.logits, root_logits + prior, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s.log_probs, F.log_softmax(root_logits + prior, dim=1), atol=1e-5, rtol=1e-5)
    assert torch.equal(model.predict(batch), (root_logits + prior).argmax(1))


@pytest.mark.parametrize("typed", [True, False])
def test_geometric_prior_is_the_normalised_square_root_of_the_product(data, typed):
    torch.manual_seed(0)
    model = nmn(typed, image_size=32, prior="geometric")
    batch = _batch(data)
    cached = torch.randn(16, 26, requires_grad=True)
    s = model.scores({**batch, PRIOR_KEY: cached})
    p = s.root if typed else F.softmax(s.root, dim=1)
    q = F.softmax(cached, dim=1)
    naive = (p * q).sqrt()
    naive = naive / naive.sum(1, keepdim=True)
    torch.testing.assert_close(s.log_probs.exp(), naive, atol=1e-6, rtol=1e-4)
    # gradients with respect to the cached prior agree with the naive formula's
    target = batch["answer"]
    g = torch.autograd.grad(F.nll_loss(s.log_probs, target), cached, retain_graph=True)[0]
    g_naive = torch.autograd.grad(F.nll_loss(naive.log(), target), cached)[0]
    torch.testing.assert_close(g, g_naive, atol=1e-6, rtol=1e-4)


def test_cached_prior_logits_replace_the_question_encoder(data, vocab):
    torch.manual_seed(0)
    model = nmn(True, image_size=32, prior="logits", questions=vocab)
    batch = _batch(data)
    with torch.no_grad():
        prior = model.question_prior(batch["question"])
        fresh = Classification(model, target="answer").loss(batch)["loss"]
    cached = {**batch, PRIOR_KEY: prior, "question": ["unrelated words"] * 16}
    with torch.no_grad():
        torch.testing.assert_close(Classification(model, target="answer").loss(cached)["loss"], fresh)
    # an NMN without an encoder runs on cached logits alone, and says so when they are missing
    bare = NMN(library=model.library, stem=model.stem, prior="logits")
    with torch.no_grad():
        torch.testing.assert_close(Classification(bare, target="answer").loss(cached)["loss"], fresh)
    with pytest.raises(ConfigError, match="batches must carry cached prior logits under 'prior_logits'"):
        Classification(bare, target="answer").loss(batch)
    with pytest.raises(ShapeError, match=r"prior logits must have the root answers' shape \(16, 26\)"):
        Classification(bare, target="answer").loss({**batch, PRIOR_KEY: prior[:, :5]})


def test_prior_none_keeps_the_plain_model(data, vocab):
    torch.manual_seed(0)
    plain = nmn(True, image_size=32)
    torch.manual_seed(0)
    none = nmn(True, image_size=32, prior="none")
    assert plain.state_dict().keys() == none.state_dict().keys()
    assert not any(k.startswith("question_prior") for k in plain.state_dict())
    batch = _batch(data)
    s = plain.scores(batch)
    assert s.prior is None
    torch.testing.assert_close(s.log_probs, torch.log(plain(batch["image"], batch["program"]).clamp_min(1e-8)))
    with pytest.raises(ConfigError, match="question vocabulary with prior='none'"):
        nmn(True, image_size=32, questions=vocab)
    with pytest.raises(ConfigError, match=r"prior must be one of \('none', 'geometric', 'logits'\), got 'sum'"):
        NMN(library=plain.library, stem=plain.stem, prior="sum")


@pytest.mark.parametrize("prior", ["geometric", "logits"])
def test_training_with_the_prior_lowers_the_loss(data, vocab, prior):
    torch.manual_seed(0)
    model = nmn(True, image_size=32, hidden=32, channels=(16, 32), prior=prior, questions=vocab)
    batch = _batch(data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = Classification(model, target="answer").loss(batch)["loss"].item()
    for _ in range(12):
        opt.zero_grad()
        Classification(model, target="answer").loss(batch)["loss"].backward()
        opt.step()
    assert Classification(model, target="answer").loss(batch)["loss"].item() < 0.7 * first
    assert model.question_prior.out.weight.grad.abs().sum() > 0  # the prior branch trains too
