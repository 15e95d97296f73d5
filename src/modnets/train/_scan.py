"""Training objectives for the SCAN models, and the metric and batches they share.

Both objectives predict the same thing, ``(B, W)`` long action classes (action ``i`` is class ``1 + i``, then
0 after the sequence's end), so that one metric, :func:`exact_match` (Lake and Baroni's: the whole action
sequence right), scores every model. ``W`` is one more than the longest action sequence
(``SCAN_MAX_ACTIONS + 1`` of :mod:`modnets.models` for SCAN): a prediction that runs past it stays wrong.

Nothing here knows SCAN's vocabulary or grammar: the vocabulary (e.g.
:class:`~modnets.models.ScanVocabulary`) and the parser (e.g. :func:`~modnets.models.scan_program`) are
arguments of :func:`scan_collate`, and the objectives read the vocabulary off the model. They share one token
convention: padding, start and end tokens first, and action class ``c`` is token ``EOS + c``. The loop that
trains and scores a SCAN model on a split (``train_scan_model``) wires data and models together, so it lives
with the experiments (:mod:`modnets.experiments.generalization`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError

__all__ = ["ExecutorObjective", "Seq2SeqObjective", "exact_match", "scan_collate"]


class _Vocabulary(Protocol):
    """What :func:`scan_collate` and :class:`Seq2SeqObjective` need of a vocabulary."""

    PAD: int
    EOS: int

    def commands(self, commands: Sequence[Sequence[str]]) -> Tensor: ...

    def targets(self, actions: Sequence[Sequence[str]]) -> Tensor: ...


def _check_width(width: object) -> int:
    if not isinstance(width, int) or isinstance(width, bool) or width < 2:
        raise ConfigError(f"width must be an int >= 2 (the longest action sequence plus one), got width={width!r}")
    return width


def scan_collate(pairs: Sequence[Any], *, vocab: _Vocabulary, parse: Callable[[Sequence[str]], Any],
                 width: int) -> dict[str, object]:
    """A batch of SCAN pairs for either objective.

    Use it as ``collate=functools.partial(scan_collate, vocab=ScanVocabulary(), parse=scan_program,
    width=SCAN_MAX_ACTIONS + 1)``.

    Args:
        pairs: examples with ``command`` (words) and ``actions`` (action names), e.g.
            :class:`~modnets.data.ScanPair` s.
        vocab: token indices (e.g. :class:`~modnets.models.ScanVocabulary`): ``commands`` and ``targets``
            tensors, its ``EOS`` token, action class ``c`` as token ``EOS + c``.
        parse: a command's words to the executor's program (e.g. :func:`~modnets.models.scan_program`).
        width: ``W``, the positions of ``"actions"``: at least one more than the longest sequence.

    Returns:
        ``"src"``: ``(B, S)`` command tokens; ``"tgt"``: ``(B, 2 + T)`` start, action tokens, end, padding;
        ``"programs"``: the commands' parses; ``"actions"``: ``(B, W)`` action classes, 0-padded.

    Raises:
        ShapeError: a pair with ``width`` actions or more.
        UnknownNameError: a word or action the vocabulary does not know (raised by ``vocab``).
    """
    width = _check_width(width)
    tgt = vocab.targets([p.actions for p in pairs])  # (B, 2 + T)
    for b, pair in enumerate(pairs):
        if len(pair.actions) >= width:
            raise ShapeError(f"SCAN pair {b} has {len(pair.actions)} actions; width={width} holds at most "
                             f"{width - 1}")
    classes = (tgt[:, 1:] - vocab.EOS).clamp_min(0)  # (B, T + 1): the end token and padding become 0
    actions = F.pad(classes, (0, width - classes.shape[1]))
    return {"src": vocab.commands([p.command for p in pairs]), "tgt": tgt,
            "programs": [parse(p.command) for p in pairs], "actions": actions}


def exact_match(predicted: Tensor, target: Tensor) -> Tensor:
    """``(B,)`` bool: whether each predicted sequence equals its target at every position.

    Args:
        predicted: ``(B, W)`` long action classes.
        target: ``(B, W)`` long action classes.
    """
    if predicted.shape != target.shape or predicted.dim() != 2:
        raise ShapeError(f"predicted and target must both be (B, W), got {tuple(predicted.shape)} and "
                         f"{tuple(target.shape)}")
    return (predicted == target).all(1)


class Seq2SeqObjective(nn.Module):
    """Token cross-entropy under teacher forcing; greedy decoding to predict.

    Args:
        model: a :class:`~modnets.models.Seq2Seq` (``model(src, prefix)`` scores, ``model.greedy``, and its
            ``vocab`` with ``PAD`` and ``EOS``).
        width: ``W``, the positions of a prediction (``SCAN_MAX_ACTIONS + 1`` for SCAN).
    """

    def __init__(self, model: nn.Module, *, width: int) -> None:
        super().__init__()
        self.model = model
        self.width = _check_width(width)

    @property
    def batch_keys(self) -> dict[str, str]:
        return {"src": "(B, S) long command tokens", "tgt": "(B, 2 + T) long start, action tokens, end"}

    def loss(self, batch) -> dict[str, Tensor]:
        tgt = batch["tgt"]
        logits = self.model(batch["src"], tgt[:, :-1])  # (B, T + 1, V)
        return {"loss": F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(),
                                        ignore_index=self.model.vocab.PAD)}

    @torch.no_grad()
    def predict(self, batch) -> Tensor:
        """``(B, W)`` long action classes of the greedy decoding: 0 from the end token on, -1 where it wrote
        the start token (never right); a decoding without an end token in ``W`` tokens never matches."""
        eos = self.model.vocab.EOS
        tokens = self.model.greedy(batch["src"], max_length=self.width + 1)  # room for W actions and the end
        ended = (tokens == eos).long().cummax(1).values.bool()
        classes = (tokens - eos).masked_fill(tokens <= eos, -1)  # a start token written is wrong wherever it is
        return classes.masked_fill(ended, 0)[:, :self.width]


class ExecutorObjective(nn.Module):
    """The negative log-likelihood of the action classes at every position of the executor's output
    (positions after the end must be blank), averaged over positions.

    Args:
        executor: a :class:`~modnets.models.ScanExecutor` (``executor(programs)``: ``(B, T, 1 + A)``
            probabilities; ``executor.actions(programs)``: ``(B, T)`` classes).
        width: ``W``, the positions of a prediction, more than the executor's ``T``
            (``SCAN_MAX_ACTIONS + 1`` for SCAN).
    """

    def __init__(self, executor: nn.Module, *, width: int) -> None:
        super().__init__()
        self.executor = executor
        self.width = _check_width(width)

    @property
    def batch_keys(self) -> dict[str, str]:
        return {"programs": "the commands' parses", "actions": "(B, W) long action classes, 0 after the end"}

    def _target(self, batch, length: int) -> Tensor:
        actions = batch["actions"]
        if bool(actions[:, length:].any()):
            raise ShapeError(f"the executor writes {length} positions; a target is longer")
        return actions[:, :length]

    def loss(self, batch) -> dict[str, Tensor]:
        probs = self.executor(batch["programs"])  # (B, T, 1 + A)
        target = self._target(batch, probs.shape[1])
        nll = -probs.clamp_min(1e-12).log().gather(2, target.unsqueeze(2)).mean()
        return {"loss": nll}

    @torch.no_grad()
    def predict(self, batch) -> Tensor:
        """``(B, W)`` long: the decoded action classes, 0-padded."""
        classes = self.executor.actions(batch["programs"])  # (B, T)
        if classes.shape[1] >= self.width:
            raise ShapeError(f"the executor writes {classes.shape[1]} positions; width={self.width} must exceed "
                             "them")
        return F.pad(classes, (0, self.width - classes.shape[1]))
