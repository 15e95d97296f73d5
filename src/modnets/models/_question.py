"""The question side of a VQA model: a word vocabulary, a recurrent question encoder and a question prior.

The original NMN (Andreas et al. 2016; thesis Fig. 4.3) reads the question with an LSTM that maps it to a
distribution over answers; the typed variant (thesis Fig. 4.10) reads the same branch as a *prior* whose
logits are added to the root module's. :class:`QuestionPrior` is that branch, trainable on its own
(decoupled input, direct supervision: thesis Table 4.1).

Example:
    >>> vocab = QuestionVocabulary.build(["is there a red shape?", "what color is the circle?"])
    >>> vocab.encode(["is there a blue circle?"]).tokens
    tensor([[2, 9, 3, 1, 4]])
    >>> prior = QuestionPrior(QuestionEncoder(vocab, embed=8, hidden=16), n_answers=5)
    >>> prior(["is there a red shape?"]).shape
    torch.Size([1, 5])
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["EncodedQuestions", "QuestionEncoder", "QuestionPrior", "QuestionVocabulary", "tokenize"]

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(question: str) -> list[str]:
    """Lower-case word tokens of a question (letters and digits; punctuation dropped).

    Example:
        >>> tokenize("Is there a Red shape?")
        ['is', 'there', 'a', 'red', 'shape']
    """
    if not isinstance(question, str):
        raise ConfigError(f"a question must be a str, got {type(question).__name__}")
    return _WORD.findall(question.lower())


class EncodedQuestions(NamedTuple):
    """A batch of questions as token indices.

    Attributes:
        tokens: ``(batch, max_length)`` long, right-padded with the padding index 0.
        lengths: ``(batch,)`` long, tokens per question (at least 1: an empty question is one unknown token).
    """

    tokens: Tensor
    lengths: Tensor


class QuestionVocabulary:
    """Word tokens to indices: index 0 is padding, index 1 the unknown word, then the known words.

    Args:
        words: the known words, in index order (without the two special tokens).

    Raises:
        ConfigError: a word repeats, is not a lower-case token, or is a special token.
    """

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        bad = [w for w in words if not isinstance(w, str) or not _WORD.fullmatch(w)]
        if bad:
            raise ConfigError(f"QuestionVocabulary words must be lower-case word tokens ([a-z0-9]+), got {bad[:5]}")
        if len(set(words)) != len(words):
            repeated = sorted(w for w, k in Counter(words).items() if k > 1)
            raise ConfigError(f"QuestionVocabulary words must be distinct, repeated: {repeated[:5]}")
        self.words = tuple(words)
        self.index = {w: i + 2 for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, questions: Iterable[str], *, min_count: int = 1) -> QuestionVocabulary:
        """The vocabulary of training questions: every word seen at least ``min_count`` times.

        Words are ordered by decreasing count, ties alphabetically, so the same questions always give
        the same indices.
        """
        if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
            raise ConfigError(f"min_count must be an int >= 1, got {min_count!r}")
        counts = Counter(w for q in questions for w in tokenize(q))
        if not counts:
            raise ConfigError("QuestionVocabulary.build needs at least one question with a word, got none")
        kept = sorted((w for w, k in counts.items() if k >= min_count), key=lambda w: (-counts[w], w))
        return cls(kept)

    def __len__(self) -> int:
        """Number of indices, the two special tokens included."""
        return len(self.words) + 2

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QuestionVocabulary) and self.words == other.words

    def __hash__(self) -> int:
        return hash(self.words)

    def __repr__(self) -> str:
        return f"QuestionVocabulary({len(self.words)} words)"

    def encode(self, questions: Sequence[str]) -> EncodedQuestions:
        """Token indices of a batch of questions (unknown words map to index 1).

        Raises:
            ConfigError: ``questions`` is a single string or empty.
        """
        if isinstance(questions, str):
            raise ConfigError("encode takes a sequence of questions, got a single str")
        if len(questions) == 0:
            raise ConfigError("encode needs at least one question, got none")
        rows = [[self.index.get(w, 1) for w in tokenize(q)] or [1] for q in questions]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return EncodedQuestions(tokens, lengths)

    def to_dict(self) -> dict:
        """JSON-ready form (``{"words": [...]}``)."""
        return {"words": list(self.words)}

    @classmethod
    def from_dict(cls, data: Mapping) -> QuestionVocabulary:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: ``data`` is not a mapping with exactly the key ``words``.
        """
        if not isinstance(data, Mapping) or set(data) != {"words"}:
            raise ConfigError(f"QuestionVocabulary.from_dict needs {{'words': [...]}}, got {data!r:.80}")
        return cls(data["words"])


class QuestionEncoder(nn.Module):
    """Questions to vectors: word embeddings read by a GRU; the last hidden state encodes the question.

    The vocabulary is part of the module's configuration (:meth:`hub_config`), so a saved encoder is
    rebuilt with the same word indices its weights were trained with.

    Args:
        vocabulary: the words (a :class:`QuestionVocabulary` or its word list).
        embed: word-embedding width.
        hidden: GRU width, the size of the encoding.
        layers: stacked GRU layers.

    Shapes:
        ``questions: (batch,)`` strings -> ``(batch, hidden)``.
    """

    def __init__(
        self, vocabulary: QuestionVocabulary | Sequence[str], *, embed: int = 32, hidden: int = 64, layers: int = 1
    ) -> None:
        super().__init__()
        if not isinstance(vocabulary, QuestionVocabulary):
            vocabulary = QuestionVocabulary(vocabulary)
        for name, value in (("embed", embed), ("hidden", hidden), ("layers", layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"QuestionEncoder {name} must be an int >= 1, got {value!r}")
        self.vocabulary = vocabulary
        self.embedding = nn.Embedding(len(vocabulary), embed, padding_idx=0)
        self.gru = nn.GRU(embed, hidden, num_layers=layers, batch_first=True)
        self.embed, self.hidden, self.layers = embed, hidden, layers

    def hub_config(self) -> dict:
        """The constructor's keyword arguments (what :mod:`modnets.hub` stores to rebuild the module)."""
        return {"vocabulary": list(self.vocabulary.words), "embed": self.embed, "hidden": self.hidden,
                "layers": self.layers}

    def forward(self, questions: Sequence[str]) -> Tensor:
        """``(batch, hidden)`` encodings of ``questions``."""
        tokens, lengths = self.vocabulary.encode(questions)
        x = self.embedding(tokens.to(self.embedding.weight.device))  # (B, T, E)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)  # (layers, B, hidden)
        return h[-1]


class QuestionPrior(nn.Module):
    """Answer logits from the question alone: a :class:`QuestionEncoder` and a linear read-out.

    Usable on its own with :func:`~modnets.train.fit` (``loss`` / ``predict`` on batches with
    ``"question"`` and ``"answer"``), then inside :class:`~modnets.models.NMN` as its prior branch, or
    cached: its logits stored under a batch's ``"prior_logits"`` key stand in for it.

    Args:
        encoder: the question encoder.
        n_answers: size of the answer vocabulary.
        dropout: dropout on the encoding before the read-out.

    Shapes:
        ``questions: (batch,)`` strings -> ``(batch, n_answers)`` logits.
    """

    def __init__(self, encoder: QuestionEncoder, *, n_answers: int, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(n_answers, int) or isinstance(n_answers, bool) or n_answers < 2:
            raise ConfigError(f"QuestionPrior n_answers must be an int >= 2, got {n_answers!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"QuestionPrior dropout must be in [0, 1), got {dropout!r}")
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(encoder.hidden, n_answers)
        self.n_answers = n_answers

    def forward(self, questions: Sequence[str]) -> Tensor:
        """``(batch, n_answers)`` answer logits."""
        return self.out(self.dropout(self.encoder(questions)))

    batch_keys = {"question": "one question string per example"}

    def logits(self, batch: Mapping) -> Tensor:
        """``(batch, n_answers)`` answer logits of the batch's questions."""
        return self(batch["question"])

    @torch.no_grad()
    def predict(self, batch: Mapping) -> Tensor:
        """``(batch,)`` predicted answer indices."""
        return self.logits(batch).argmax(1)
