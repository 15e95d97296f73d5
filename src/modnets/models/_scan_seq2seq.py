"""Sequence-to-sequence baselines for SCAN: a GRU encoder-decoder with attention and a small Transformer.

Both read a command as word tokens and write its actions token by token: teacher forcing in training
(:meth:`Seq2Seq.forward` scores every next token of the gold prefix), greedy decoding at test
(:meth:`Seq2Seq.greedy`, which stops each sequence at its end token). :class:`ScanVocabulary` fixes the
token indices of both sides.

Sizes. Lake and Baroni (2018) searched over LSTM / GRU, with and without attention, 1 or 2 layers of 25 to
400 hidden units and dropout 0 to 0.5, trained 100,000 steps with batch size 1; their best overall model
was a 2-layer LSTM of 200 hidden units, dropout 0.5, without attention, and their best on add-jump a
1-layer GRU of 100 units with attention, dropout 0.1. The defaults here are CPU-sized and batched:
:func:`scan_gru` is a 1-layer GRU of 128 units with (Luong, "general") attention and dropout 0.1,
:func:`scan_transformer` a 2 + 2 layer Transformer of width 64; both train in minutes on one core, far
fewer updates than the paper's. Pass the paper's sizes to reproduce its models (``scan_gru(hidden=200,
layers=2, dropout=0.5, attention=False)`` is the closest to its best overall, with a GRU for its LSTM).

Example:
    >>> import torch
    >>> vocab = ScanVocabulary()
    >>> src = vocab.commands([("jump", "twice"), ("walk",)])
    >>> model = scan_gru(vocab, hidden=16)
    >>> model(src, vocab.targets([("I_JUMP", "I_JUMP"), ("I_WALK",)])[:, :-1]).shape
    torch.Size([2, 3, 9])
    >>> model.greedy(src, max_length=5).shape
    torch.Size([2, 5])
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, UnknownNameError
from ._scan_executor import SCAN_ACTIONS

__all__ = ["GRUSeq2Seq", "SCAN_WORDS", "ScanVocabulary", "Seq2Seq", "TransformerSeq2Seq", "scan_gru",
           "scan_transformer"]

#: The 13 words of SCAN commands.
SCAN_WORDS = ("walk", "look", "run", "jump", "turn", "left", "right", "opposite", "around", "twice", "thrice",
              "and", "after")


class ScanVocabulary:
    """Token indices of SCAN commands and action sequences.

    Commands: 0 is padding, then :data:`SCAN_WORDS`. Actions: 0 is padding, 1 the start token, 2 the end
    token, then ``SCAN_ACTIONS`` (action ``i`` is token ``3 + i``).
    """

    PAD, BOS, EOS = 0, 1, 2

    def __init__(self) -> None:
        self.words = {w: i + 1 for i, w in enumerate(SCAN_WORDS)}
        self.actions = {a: i + 3 for i, a in enumerate(SCAN_ACTIONS)}

    @property
    def n_words(self) -> int:
        """Command tokens, padding included."""
        return 1 + len(self.words)

    @property
    def n_actions(self) -> int:
        """Action tokens, padding, start and end included."""
        return 3 + len(self.actions)

    @staticmethod
    def _pad(rows: list[list[int]]) -> Tensor:
        out = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for b, row in enumerate(rows):
            out[b, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def _index(self, table: dict[str, int], tokens: Sequence[str], what: str) -> list[int]:
        try:
            return [table[t] for t in tokens]
        except KeyError as e:
            raise UnknownNameError(f"unknown SCAN {what} {e.args[0]!r}; known: {', '.join(table)}") from None

    def commands(self, commands: Sequence[Sequence[str]]) -> Tensor:
        """``(batch, max words)`` long: the commands' word tokens, right-padded with 0.

        Raises:
            UnknownNameError: a word that is not a SCAN word.
            ShapeError: no commands, or an empty command.
        """
        if not commands or not all(commands):
            raise ShapeError(f"commands must be a non-empty list of non-empty word sequences, got {commands!r}")
        return self._pad([self._index(self.words, c, "word") for c in commands])

    def targets(self, actions: Sequence[Sequence[str]]) -> Tensor:
        """``(batch, 2 + max actions)`` long: start token, the actions, end token, right-padded with 0.

        Raises:
            UnknownNameError: an unknown action.
            ShapeError: no sequences.
        """
        if not actions:
            raise ShapeError("actions must be a non-empty list of action sequences")
        return self._pad([[self.BOS, *self._index(self.actions, a, "action"), self.EOS] for a in actions])


class Seq2Seq(nn.Module, ABC):
    """A token-level encoder-decoder: teacher-forced scores and greedy decoding.

    Subclasses give :meth:`encode`, :meth:`forward` and :meth:`step`; :meth:`greedy` is shared.

    Args:
        vocab: the token indices.
    """

    def __init__(self, vocab: ScanVocabulary) -> None:
        super().__init__()
        self.vocab = vocab

    @abstractmethod
    def encode(self, src: Tensor) -> Any:
        """The encoding of ``src: (B, S)`` long (padded with 0) that :meth:`step` reads."""

    @abstractmethod
    def forward(self, src: Tensor, prefix: Tensor) -> Tensor:
        """Teacher forcing: ``(B, T, n_actions)`` next-token logits after each token of ``prefix: (B, T)``
        (the gold target without its last token), from ``src: (B, S)``."""

    @abstractmethod
    def step(self, encoded: Any, state: Any, token: Tensor) -> tuple[Tensor, Any]:
        """One decoding step: ``(B, n_actions)`` logits of the token after ``token: (B,)`` and the new
        state (``state`` is ``None`` at the first step)."""

    @torch.no_grad()
    def greedy(self, src: Tensor, *, max_length: int) -> Tensor:
        """Greedy decoding: the most likely token at each step, from the start token, until every sequence
        has written its end token or ``max_length`` tokens.

        Args:
            src: ``(B, S)`` long command tokens.
            max_length: the most tokens written per sequence (the end token included).

        Returns:
            ``(B, max_length)`` long: the tokens written, the end token included, then 0.
        """
        if not isinstance(max_length, int) or max_length < 1:
            raise ConfigError(f"max_length must be a positive int, got max_length={max_length!r}")
        encoded = self.encode(src)
        out = torch.zeros(src.shape[0], max_length, dtype=torch.long, device=src.device)
        token = torch.full((src.shape[0],), self.vocab.BOS, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        state = None
        for t in range(max_length):
            logits, state = self.step(encoded, state, token)
            token = logits.argmax(-1).masked_fill(done, self.vocab.PAD)
            out[:, t] = token
            done |= token == self.vocab.EOS
            if bool(done.all()):
                break
        return out


def _check_sizes(**sizes: float) -> None:
    for name, value in sizes.items():
        if name == "dropout":
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"dropout must be in [0, 1), got dropout={value!r}")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive int, got {name}={value!r}")


class GRUSeq2Seq(Seq2Seq):
    """A GRU encoder and a GRU decoder with Luong ("general") attention over the encoder's states.

    The decoder's state after each token attends over the command; ``tanh(W [state; context])`` is read
    out to the next token's logits (no input feeding, so teacher forcing runs the decoder GRU over the
    whole prefix at once).

    Args:
        vocab: token indices.
        hidden: GRU width (and embedding width).
        layers: GRU layers (encoder and decoder each).
        dropout: on embeddings, between layers and before the read-out.
        attention: ``False`` reads out from the decoder state alone (Lake and Baroni's best overall model
            had no attention).
    """

    def __init__(self, vocab: ScanVocabulary, *, hidden: int = 128, layers: int = 1, dropout: float = 0.1,
                 attention: bool = True) -> None:
        super().__init__(vocab)
        _check_sizes(hidden=hidden, layers=layers, dropout=dropout)
        self.attention = bool(attention)
        self.src_embed = nn.Embedding(vocab.n_words, hidden, padding_idx=0)
        self.tgt_embed = nn.Embedding(vocab.n_actions, hidden, padding_idx=0)
        between = dropout if layers > 1 else 0.0
        self.encoder = nn.GRU(hidden, hidden, layers, batch_first=True, dropout=between)
        self.decoder = nn.GRU(hidden, hidden, layers, batch_first=True, dropout=between)
        self.score = nn.Linear(hidden, hidden, bias=False)
        self.combine = nn.Linear(2 * hidden if attention else hidden, hidden)
        self.out = nn.Linear(hidden, vocab.n_actions)
        self.drop = nn.Dropout(dropout)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(states (B, S, H), padding (B, S) bool, final hidden (layers, B, H))``."""
        if src.dim() != 2:
            raise ShapeError(f"src must be (batch, words) long tokens, got shape {tuple(src.shape)}")
        lengths = (src != 0).sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(self.src_embed(src)), lengths, batch_first=True,
                                                   enforce_sorted=False)
        states, final = self.encoder(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=src.shape[1])
        return states, src == 0, final

    def _read_out(self, h: Tensor, states: Tensor, padding: Tensor) -> Tensor:
        """``(B, T, n_actions)`` logits from decoder states ``h: (B, T, H)``."""
        if self.attention:
            scores = torch.bmm(self.score(h), states.transpose(1, 2))  # (B, T, S)
            weights = scores.masked_fill(padding.unsqueeze(1), float("-inf")).softmax(-1)
            h = torch.cat([h, torch.bmm(weights, states)], -1)
        return self.out(self.drop(torch.tanh(self.combine(h))))

    def forward(self, src: Tensor, prefix: Tensor) -> Tensor:
        states, padding, final = self.encode(src)
        h, _ = self.decoder(self.drop(self.tgt_embed(prefix)), final)
        return self._read_out(h, states, padding)

    def step(self, encoded: tuple[Tensor, Tensor, Tensor], state: Tensor | None,
             token: Tensor) -> tuple[Tensor, Tensor]:
        states, padding, final = encoded
        h, state = self.decoder(self.drop(self.tgt_embed(token.unsqueeze(1))), final if state is None else state)
        return self._read_out(h, states, padding).squeeze(1), state


def _positions(length: int, width: int) -> Tensor:
    """``(length, width)`` sinusoidal position encodings (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10_000.0) / width))
    out = torch.zeros(length, width)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: width // 2])
    return out


class TransformerSeq2Seq(Seq2Seq):
    """A small Transformer encoder-decoder (``torch.nn`` encoder and decoder layers, post-norm) with sinusoidal
    positions.

    Greedy decoding re-runs the decoder over the prefix at every step (sequences are at most ~50 tokens).

    Args:
        vocab: token indices.
        width: model width.
        heads: attention heads.
        layers: encoder layers and decoder layers (each).
        feedforward: width of the feed-forward blocks.
        dropout: dropout inside the Transformer.
        max_positions: the longest sequence with a position encoding.
    """

    def __init__(self, vocab: ScanVocabulary, *, width: int = 64, heads: int = 4, layers: int = 2,
                 feedforward: int = 256, dropout: float = 0.1, max_positions: int = 128) -> None:
        super().__init__(vocab)
        _check_sizes(width=width, heads=heads, layers=layers, feedforward=feedforward, dropout=dropout,
                     max_positions=max_positions)
        if width % heads or width % 2:
            raise ConfigError(f"width must be even and divisible by heads, got width={width}, heads={heads}")
        self.width = width
        self.src_embed = nn.Embedding(vocab.n_words, width, padding_idx=0)
        self.tgt_embed = nn.Embedding(vocab.n_actions, width, padding_idx=0)
        self.register_buffer("positions", _positions(max_positions, width), persistent=False)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(width, heads, feedforward, dropout, batch_first=True), layers,
            enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(width, heads, feedforward, dropout, batch_first=True), layers)
        self.out = nn.Linear(width, vocab.n_actions)

    def _embed(self, table: nn.Embedding, tokens: Tensor) -> Tensor:
        if tokens.shape[1] > self.positions.shape[0]:
            raise ShapeError(f"sequences of {tokens.shape[1]} tokens exceed max_positions={self.positions.shape[0]}")
        return table(tokens) * math.sqrt(self.width) + self.positions[: tokens.shape[1]]

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """``(memory (B, S, width), padding (B, S) bool)``."""
        if src.dim() != 2:
            raise ShapeError(f"src must be (batch, words) long tokens, got shape {tuple(src.shape)}")
        padding = src == 0
        return self.encoder(self._embed(self.src_embed, src), src_key_padding_mask=padding), padding

    def _decode(self, encoded: tuple[Tensor, Tensor], prefix: Tensor) -> Tensor:
        memory, padding = encoded
        t = prefix.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=prefix.device).triu(1)  # True: may not attend
        h = self.decoder(self._embed(self.tgt_embed, prefix), memory, tgt_mask=causal,
                                     tgt_is_causal=True, tgt_key_padding_mask=prefix == 0,
                                     memory_key_padding_mask=padding)
        return self.out(h)

    def forward(self, src: Tensor, prefix: Tensor) -> Tensor:
        return self._decode(self.encode(src), prefix)

    def step(self, encoded: tuple[Tensor, Tensor], state: Tensor | None, token: Tensor) -> tuple[Tensor, Tensor]:
        prefix = token.unsqueeze(1) if state is None else torch.cat([state, token.unsqueeze(1)], 1)  # (B, t)
        return self._decode(encoded, prefix)[:, -1], prefix


def scan_gru(vocab: ScanVocabulary | None = None, *, hidden: int = 128, layers: int = 1, dropout: float = 0.1,
             attention: bool = True) -> GRUSeq2Seq:
    """The GRU baseline (see the module docstring for the paper's sizes and this default's departure)."""
    return GRUSeq2Seq(vocab or ScanVocabulary(), hidden=hidden, layers=layers, dropout=dropout, attention=attention)


def scan_transformer(vocab: ScanVocabulary | None = None, *, width: int = 64, heads: int = 4, layers: int = 2,
                     feedforward: int = 256, dropout: float = 0.1) -> TransformerSeq2Seq:
    """The Transformer baseline: 2 encoder and 2 decoder layers of width 64 by default."""
    return TransformerSeq2Seq(vocab or ScanVocabulary(), width=width, heads=heads, layers=layers,
                              feedforward=feedforward, dropout=dropout)
