import pytest
import torch

from modnets.errors import ConfigError
from modnets.models import QuestionEncoder, QuestionPrior, QuestionVocabulary, tokenize
from modnets.train import Classification

QUESTIONS = [
    "Is there a red shape?",
    "what color is the circle?",
    "is there not a blue triangle in the image?",
    "what shape is present?",
]


def test_tokenize_lower_cases_and_drops_punctuation():
    assert tokenize("Is there a RED shape?") == ["is", "there", "a", "red", "shape"]
    assert tokenize("  ?! ") == []


def test_vocabulary_orders_by_count_then_alphabet_and_maps_unknown_and_padding():
    vocab = QuestionVocabulary.build(QUESTIONS)
    assert vocab.words[:6] == ("is", "a", "shape", "the", "there", "what")  # counts 3, then 2 (alphabetical)
    assert len(vocab) == len(vocab.words) + 2
    tokens, lengths = vocab.encode(["is there a purple shape", "what"])
    assert lengths.tolist() == [5, 1]
    assert tokens[0, 3].item() == 1  # "purple" is unknown
    assert tokens[1].tolist() == [vocab.index["what"], 0, 0, 0, 0]  # right-padded with 0
    assert QuestionVocabulary.build(reversed(QUESTIONS)) == vocab  # order of the questions does not matter
    assert QuestionVocabulary.from_dict(vocab.to_dict()) == vocab


def test_vocabulary_min_count_keeps_frequent_words_only():
    vocab = QuestionVocabulary.build(QUESTIONS, min_count=2)
    assert set(vocab.words) == {"is", "a", "there", "what", "the", "shape"}


@pytest.mark.parametrize(
    ("words", "message"),
    [(["red", "red"], "distinct"), (["Red"], "lower-case"), (["<unk>"], "lower-case")],
)
def test_vocabulary_rejects_bad_words(words, message):
    with pytest.raises(ConfigError, match=message):
        QuestionVocabulary(words)


def test_encoding_does_not_depend_on_padding_or_batch_neighbours():
    torch.manual_seed(0)
    enc = QuestionEncoder(QuestionVocabulary.build(QUESTIONS), embed=8, hidden=16).eval()
    alone = enc(["what shape is present?"])
    batched = enc(["is there not a blue triangle in the image?", "what shape is present?"])
    assert batched.shape == (2, 16)
    torch.testing.assert_close(batched[1:], alone)


def test_encoder_rebuilt_from_its_config_gives_identical_outputs():
    torch.manual_seed(0)
    enc = QuestionEncoder(QuestionVocabulary.build(QUESTIONS), embed=8, hidden=16)
    rebuilt = QuestionEncoder(**enc.hub_config())
    rebuilt.load_state_dict(enc.state_dict())
    assert rebuilt.vocabulary == enc.vocabulary
    torch.testing.assert_close(rebuilt(QUESTIONS), enc(QUESTIONS))
    assert all(isinstance(v, torch.Tensor) for v in enc.state_dict().values())  # storable as safetensors


def test_question_prior_learns_answers_from_the_question_alone():
    torch.manual_seed(0)
    questions = ["is there a red shape?", "is there not a red shape?", "what color is it?", "what shape is it?"] * 4
    answers = torch.tensor([1, 0, 2, 3] * 4)
    prior = QuestionPrior(QuestionEncoder(QuestionVocabulary.build(questions), embed=8, hidden=16), n_answers=4)
    opt = torch.optim.Adam(prior.parameters(), lr=3e-2)
    batch = {"question": questions, "answer": answers}
    first = Classification(prior, target="answer").loss(batch)["loss"].item()
    for _ in range(30):
        opt.zero_grad()
        Classification(prior, target="answer").loss(batch)["loss"].backward()
        opt.step()
    terms = Classification(prior, target="answer").loss(batch)
    assert terms["loss"].item() < 0.2 * first
    assert terms["accuracy"].item() == 1.0
    assert torch.equal(prior.predict(batch), answers)


def test_question_prior_rejects_bad_sizes():
    enc = QuestionEncoder(["red"], embed=4, hidden=4)
    with pytest.raises(ConfigError, match="n_answers must be an int >= 2, got 1"):
        QuestionPrior(enc, n_answers=1)
    with pytest.raises(ConfigError, match="hidden must be an int >= 1, got 0"):
        QuestionEncoder(["red"], hidden=0)
    with pytest.raises(ConfigError, match="single str"):
        enc.vocabulary.encode("is there a red shape")
