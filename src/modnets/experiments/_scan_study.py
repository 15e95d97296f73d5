"""Training and scoring one SCAN model on one split: :func:`train_scan_model`, the ``generalization``
experiment's SCAN loop.

It wires a split of :func:`~modnets.data.scan_split`, a model of :mod:`modnets.models` (the GRU or
Transformer seq2seq baselines, or the grammar-given modular executor) and :func:`~modnets.train.fit` with the
SCAN objectives of :mod:`modnets.train` together. It lives with the experiments because it reads data and
builds models, which the training layer never does (``DESIGN.md``: nothing in ``train`` imports
``modnets.models`` or ``modnets.data``).

Every model is scored by :func:`~modnets.train.exact_match` on ``(B, W)`` action classes,
``W = SCAN_MAX_ACTIONS + 1``: a prediction that runs past the longest SCAN sequence stays wrong.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import check_ints
from .._config import Config
from ..data import ScanDataset, ScanPair, scan_split
from ..errors import ConfigError
from ..models import SCAN_MAX_ACTIONS, ScanVocabulary, scan_executor, scan_gru, scan_program, scan_transformer
from ..train import (
    ExecutorObjective,
    FitConfig,
    RunDir,
    Seq2SeqObjective,
    exact_match,
    fit,
    predict,
    scan_collate,
)

__all__ = ["SCAN_KINDS", "ScanResult", "ScanTrainConfig", "train_scan_model"]

#: The models :func:`train_scan_model` trains.
SCAN_KINDS = ("gru", "transformer", "executor")
_WIDTH = SCAN_MAX_ACTIONS + 1
_VOCAB = ScanVocabulary()
#: SCAN pairs to the batches of both objectives (:func:`~modnets.train.scan_collate` with SCAN's vocabulary
#: and grammar)
collate = functools.partial(scan_collate, vocab=_VOCAB, parse=scan_program, width=_WIDTH)


@dataclass
class ScanTrainConfig(Config):
    """Settings of :func:`train_scan_model`.

    Attributes:
        seconds: training time budget (``fit``'s ``max_seconds``).
        epochs: the most passes over the training examples.
        batch_size: examples per step.
        lr: Adam learning rate (``None``: 0.001 for the seq2seq models, 0.01 for the executor).
        validation: share of the training split's distinct commands held out to measure in-distribution
            accuracy (0: report training accuracy instead, labelled as such).
        repeat_primitive: on the add-primitive splits, repeat the primitive to a tenth of the training
            examples, as the released files do (without it, one example in ~13,000 teaches ``jump``).
        train_limit: train on at most this many examples (``None``: all).
        eval_limit: score at most this many in-distribution and test examples (``None``: all).
        hidden: the model's width (``None``: the preset's default: 128 GRU units, Transformer width 64,
            executor MLP width 128).
        layers: GRU / Transformer layers (``None``: the preset's default).
        dropout: seq2seq dropout (``None``: the preset's default, 0.1).
        device: where to train.
    """

    seconds: float = 120.0
    epochs: int = 1000
    batch_size: int = 64
    lr: float | None = None
    validation: float = 0.05
    repeat_primitive: bool = True
    train_limit: int | None = None
    eval_limit: int | None = 2000
    hidden: int | None = None
    layers: int | None = None
    dropout: float | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_ints(self, "epochs", "batch_size")
        if not self.seconds > 0:
            raise ConfigError(f"ScanTrainConfig.seconds must be > 0, got {self.seconds!r}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"ScanTrainConfig.lr must be > 0 or None, got {self.lr!r}")
        if not 0.0 <= self.validation < 1.0:
            raise ConfigError(f"ScanTrainConfig.validation must be in [0, 1), got {self.validation!r}")
        for name in ("train_limit", "eval_limit", "hidden", "layers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"ScanTrainConfig.{name} must be a positive int or None, got {value!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ScanTrainConfig.dropout must be in [0, 1) or None, got {self.dropout!r}")


@dataclass
class ScanResult:
    """What :func:`train_scan_model` measured.

    Attributes:
        kind: the model (one of :data:`SCAN_KINDS`).
        split: the SCAN split.
        seed: the seed.
        in_distribution: exact-match accuracy on held-out training commands (on the training examples when
            ``validation`` is 0: see ``in_distribution_source``).
        in_distribution_source: ``"held-out training commands"`` or ``"training examples"``.
        test: exact-match accuracy on the split's test set.
        n_train: training examples (repetitions included); ``n_in_distribution`` / ``n_test``: examples
            scored.
        steps: optimiser steps; ``seconds``: training time.
        first_loss: mean loss over the first logged steps; ``last_loss``: over the last ones.
        parameters: trainable parameters.
        history: the logged scalars of ``fit``.
    """

    kind: str
    split: str
    seed: int
    in_distribution: float
    in_distribution_source: str
    test: float
    n_train: int
    n_in_distribution: int
    n_test: int
    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    parameters: int
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, object]:
        """The result as JSON values, the history left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "history"}


def _hold_out(pairs: list[ScanPair], share: float, rng: random.Random) -> tuple[list[ScanPair], list[ScanPair]]:
    """Training pairs and held-out commands: ``share`` of the commands that occur once (a repeated primitive
    always stays in training)."""
    counts = Counter(p.command for p in pairs)
    once = [i for i, p in enumerate(pairs) if counts[p.command] == 1]
    held = set(rng.sample(once, round(share * len(once))))
    return [p for i, p in enumerate(pairs) if i not in held], [pairs[i] for i in sorted(held)]


def _objective(kind: str, config: ScanTrainConfig) -> nn.Module:
    sizes = {k: v for k, v in (("layers", config.layers), ("dropout", config.dropout)) if v is not None}
    if kind == "gru":
        model = scan_gru(_VOCAB, **sizes, **({"hidden": config.hidden} if config.hidden else {}))
        return Seq2SeqObjective(model, width=_WIDTH)
    if kind == "transformer":
        model = scan_transformer(_VOCAB, **sizes, **({"width": config.hidden} if config.hidden else {}))
        return Seq2SeqObjective(model, width=_WIDTH)
    return ExecutorObjective(scan_executor(**({"hidden": config.hidden} if config.hidden else {})), width=_WIDTH)


def _accuracy(objective: nn.Module, pairs: Sequence[ScanPair], batch_size: int) -> float:
    if not pairs:
        return float("nan")
    data = ScanDataset(pairs)
    predicted = predict(objective, data, collate=collate, batch_size=batch_size)
    target = torch.cat([collate(pairs[i:i + batch_size])["actions"] for i in range(0, len(pairs), batch_size)])
    return float(exact_match(predicted, target).float().mean())


def _mean_loss(history: list[dict[str, float]], last: bool) -> float:
    losses = [h["loss"] for h in history if "loss" in h]
    n = max(1, min(10, len(losses) // 4))
    window = losses[-n:] if last else losses[:n]
    return sum(window) / len(window) if window else float("nan")


def train_scan_model(kind: str, split: str, *, seed: int = 0, config: ScanTrainConfig | None = None,
                     run: RunDir | None = None) -> ScanResult:
    """Train one SCAN model on one split and score it by exact match.

    The model is trained with Adam for ``config.seconds`` (or ``config.epochs``) on the split's training
    examples less ``config.validation`` of its commands, which measure in-distribution accuracy; test
    accuracy is on the split's test set. Seq2seq models train by teacher forcing and are scored on their
    greedy decoding; the executor is given each command's parse.

    Args:
        kind: ``"gru"``, ``"transformer"`` or ``"executor"``.
        split: a split name of :func:`~modnets.data.scan_split` (``"simple"``, ``"length"``,
            ``"addprim_jump"``, ``"addprim_turn_left"``).
        seed: seeds the split, the held-out commands, the model's initialisation and the batches.
        config: budget and sizes (default :class:`ScanTrainConfig`).
        run: where ``fit`` logs and checkpoints (default: nothing written, no progress bar).

    Returns:
        in-distribution and test exact-match accuracy, losses, steps and time.

    Raises:
        ConfigError: an unknown kind or split, or a bad config.

    Example:
        >>> result = train_scan_model("executor", "simple", config=ScanTrainConfig(  # doctest: +SKIP
        ...     seconds=120, batch_size=128))
        >>> result.test  # doctest: +SKIP
    """
    if kind not in SCAN_KINDS:
        raise ConfigError(f"unknown SCAN model kind {kind!r}; known kinds: {', '.join(SCAN_KINDS)}")
    config = config or ScanTrainConfig()
    data = scan_split(split, seed=seed, repeat_primitive=config.repeat_primitive and split.startswith("addprim"))
    rng = random.Random(seed)
    train, held = _hold_out(list(data.train.pairs), config.validation, rng)
    if config.train_limit is not None:
        train = train[:config.train_limit]
    test = list(data.test.pairs)
    if config.eval_limit is not None:
        held, test = held[:config.eval_limit], test[:config.eval_limit]
    source = "held-out training commands" if held else "training examples"
    if not held:
        held = train if config.eval_limit is None else train[:config.eval_limit]
    # seeded, without touching the caller's generator (the data loaders draw from it too)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        objective = _objective(kind, config)
        lr = config.lr if config.lr is not None else (1e-2 if kind == "executor" else 1e-3)
        fit_config = FitConfig(epochs=config.epochs, batch_size=config.batch_size, lr=lr, seed=seed,
                               max_seconds=config.seconds, log_every=1, device=config.device)
        result = fit(objective, ScanDataset(train), config=fit_config, collate=collate,
                     run=run if run is not None else RunDir(progress=False), name=f"scan_{kind}")
        in_distribution, accuracy = _accuracy(objective, held, 256), _accuracy(objective, test, 256)
    return ScanResult(
        kind=kind, split=split, seed=seed, in_distribution=in_distribution, in_distribution_source=source,
        test=accuracy, n_train=len(train), n_in_distribution=len(held), n_test=len(test),
        steps=result.steps, seconds=result.seconds, first_loss=_mean_loss(result.history, last=False),
        last_loss=_mean_loss(result.history, last=True),
        parameters=sum(p.numel() for p in objective.parameters() if p.requires_grad), history=result.history,
    )
