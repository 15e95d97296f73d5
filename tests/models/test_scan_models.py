"""The SCAN models: the parse that gives the executor its layout, shapes, greedy decoding, training."""

from __future__ import annotations

import ast
import inspect

import pytest
import torch
from torch import Tensor

from modnets.compose import Program
from modnets.data import ScanPair, scan_commands, scan_split
from modnets.errors import ConfigError, ProgramSyntaxError, ShapeError, UnknownNameError
from modnets.experiments.generalization import ScanTrainConfig, train_scan_model
from modnets.models import (
    SCAN_ACTIONS,
    SCAN_MAX_ACTIONS,
    CopyModule,
    ScanVocabulary,
    Seq2Seq,
    decode_actions,
    scan_executor,
    scan_gru,
    scan_program,
    scan_transformer,
)
from modnets.train import ExecutorObjective, Seq2SeqObjective, scan_collate

W = SCAN_MAX_ACTIONS + 1

_TURN = {"left": ("I_TURN_LEFT",), "right": ("I_TURN_RIGHT",)}
_WORD = {"walk": ("I_WALK",), "look": ("I_LOOK",), "run": ("I_RUN",), "jump": ("I_JUMP",), "turn": ()}


def meaning(program: Program) -> tuple[str, ...]:
    """The reference semantics of an executor program, written from the paper's interpretation function."""
    kids = [meaning(c) for c in program.children]
    if program.name == "action":
        return _WORD[program.arg]
    if program.name == "turn":
        return _TURN[program.arg] + kids[0]
    if program.name == "opposite":
        return _TURN[program.arg] * 2 + kids[0]
    if program.name == "around":
        return (_TURN[program.arg] + kids[0]) * 4
    if program.name == "repeat":
        return kids[0] * {"twice": 2, "thrice": 3}[program.arg]
    if program.name == "and":
        return kids[0] + kids[1]
    assert program.name == "after"
    return kids[1] + kids[0]


def test_the_parse_covers_every_command_and_means_its_actions():
    library = scan_executor(hidden=4).library
    pairs = scan_commands().pairs
    assert len(pairs) == 20_910
    for pair in pairs:
        program = scan_program(pair.command)
        assert meaning(program) == pair.actions, pair
    library.check(scan_program(pairs[0].command))  # every module the parses name exists and types check
    names = {call.name for pair in pairs[::97] for call in scan_program(pair.command).unique_calls()}
    assert names == set(library.names)


@pytest.mark.parametrize(("command", "position"), [
    ("walk twice and", 15), ("and walk", 0), ("walk and run and look", 13), ("turn", 0), ("walk left left", 0),
    ("fly", 0), ("walk around", 0), ("twice", 0),
])
def test_bad_commands_raise_with_the_position(command, position):
    with pytest.raises(ProgramSyntaxError) as info:
        scan_program(command.split())
    assert info.value.position == position
    assert info.value.text == command


def test_shapes():
    vocab = ScanVocabulary()
    pairs = list(scan_split("simple").train.pairs[:5])
    batch = scan_collate(pairs, vocab=vocab, parse=scan_program, width=W)
    longest = max(len(p.actions) for p in pairs)
    assert batch["tgt"].shape == (5, longest + 2) and batch["actions"].shape == (5, SCAN_MAX_ACTIONS + 1)
    for model in (scan_gru(vocab, hidden=16), scan_transformer(vocab, width=16, feedforward=32)):
        assert model(batch["src"], batch["tgt"][:, :-1]).shape == (5, longest + 1, vocab.n_actions)
        assert model.greedy(batch["src"], max_length=7).shape == (5, 7)
        assert Seq2SeqObjective(model, width=W).eval().predict(batch).shape == (5, W)
    executor = scan_executor(hidden=8)
    probs = executor(batch["programs"])
    assert probs.shape == (5, SCAN_MAX_ACTIONS, 7)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, SCAN_MAX_ACTIONS))
    assert ExecutorObjective(executor, width=W).predict(batch).shape == (5, W)


def test_the_collate_numbers_actions_as_classes_and_checks_the_width():
    vocab = ScanVocabulary()
    pairs = [ScanPair(("jump", "twice"), ("I_JUMP", "I_JUMP")), ScanPair(("turn", "left"), ("I_TURN_LEFT",))]
    batch = scan_collate(pairs, vocab=vocab, parse=scan_program, width=4)
    jump, left = 1 + SCAN_ACTIONS.index("I_JUMP"), 1 + SCAN_ACTIONS.index("I_TURN_LEFT")
    assert batch["actions"].tolist() == [[jump, jump, 0, 0], [left, 0, 0, 0]]
    assert [str(p) for p in batch["programs"]] == ["repeat[twice](action[jump])", "turn[left](action[turn])"]
    with pytest.raises(ShapeError, match="pair 0 has 2 actions; width=2"):
        scan_collate(pairs, vocab=vocab, parse=scan_program, width=2)
    with pytest.raises(ConfigError, match="width"):
        Seq2SeqObjective(scan_gru(vocab, hidden=4), width=0)


def test_the_training_layer_imports_neither_models_nor_data():
    """DESIGN.md's dependency rule: the SCAN objectives take the vocabulary and the parser as arguments."""
    source = inspect.getsource(inspect.getmodule(scan_collate))
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m and m.lstrip(".").split(".")[0] in ("models", "data")}
    assert not {m for m in imported if m and m.startswith(("modnets.models", "modnets.data"))}


def test_unknown_tokens_are_named():
    with pytest.raises(UnknownNameError, match="'fly'"):
        ScanVocabulary().commands([("fly",)])


class Countdown(Seq2Seq):
    """Writes action token 3 until row ``b``'s step ``stops[b]``, then the end token, then action 4 forever."""

    def __init__(self, stops: list[int]):
        super().__init__(ScanVocabulary())
        self.stops = torch.tensor(stops)

    def encode(self, src: Tensor) -> None:
        return None

    def forward(self, src: Tensor, prefix: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, encoded, state, token):
        t = 0 if state is None else state + 1
        logits = torch.zeros(len(self.stops), self.vocab.n_actions)
        choice = torch.where(t < self.stops, 3, torch.where(t == self.stops, self.vocab.EOS, 4))
        return logits.scatter(1, choice.unsqueeze(1), 1.0), t


def test_greedy_decoding_stops_each_sequence_at_its_end_token():
    out = Countdown([0, 2, 9]).greedy(torch.ones(3, 2, dtype=torch.long), max_length=6)
    assert out.tolist() == [[2, 0, 0, 0, 0, 0], [3, 3, 2, 0, 0, 0], [3, 3, 3, 3, 3, 3]]
    classes = Seq2SeqObjective(Countdown([0, 2, 60]), width=W).predict({"src": torch.ones(3, 2, dtype=torch.long)})
    assert classes[0].eq(0).all() and classes[1, :2].eq(1).all() and classes[1, 2:].eq(0).all()
    assert classes[2].eq(1).all()  # never ends: wrong against every target, which ends with a 0


def test_decode_actions_cuts_at_the_first_blank():
    probs = torch.nn.functional.one_hot(torch.tensor([[2, 0, 3, 1]]), 7).float()
    assert decode_actions(probs).tolist() == [[2, 0, 0, 0]]


def test_copy_modules_are_blind_to_the_actions_they_copy():
    """Relabelling the actions of the inputs relabels the output the same way (no constants): composition
    cannot tell ``jump`` from ``walk``, which is what carries a primitive seen alone into every layout."""
    torch.manual_seed(0)
    module = CopyModule(2, length=6, constants=0, hidden=(16,))
    x1 = torch.softmax(torch.randn(3, 6, 7) * 3, -1)
    x2 = torch.softmax(torch.randn(3, 6, 7) * 3, -1)
    relabel = torch.tensor([0, 4, 6, 1, 3, 2, 5])  # the blank stays the blank
    torch.testing.assert_close(module(x1[..., relabel], x2[..., relabel]), module(x1, x2)[..., relabel])


@pytest.mark.parametrize("kind", ["gru", "transformer", "executor"])
def test_a_tiny_training_run_makes_the_loss_fall(kind):
    config = ScanTrainConfig(seconds=30, epochs=6, batch_size=16, lr=5e-3, train_limit=64, eval_limit=16,
                             hidden=32)
    result = train_scan_model(kind, "addprim_jump", config=config)
    assert result.steps == 24 and result.n_train == 64
    assert result.last_loss < 0.8 * result.first_loss
    assert 0.0 <= result.test <= 1.0 and result.in_distribution_source == "held-out training commands"


def test_training_leaves_the_global_generator_alone():
    torch.manual_seed(3)
    before = torch.get_rng_state()
    train_scan_model("gru", "simple", config=ScanTrainConfig(seconds=5, epochs=1, batch_size=8, train_limit=8,
                                                             eval_limit=4, hidden=8))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.slow
def test_the_gru_overfits_a_tiny_subset():
    """Measured: 84 % of 32 training commands exactly right after 800 steps (token loss 0.03)."""
    config = ScanTrainConfig(seconds=240, epochs=400, batch_size=16, lr=3e-3, train_limit=32, validation=0.0,
                             eval_limit=32, dropout=0.0)
    result = train_scan_model("gru", "simple", config=config)
    assert result.in_distribution_source == "training examples"
    assert result.in_distribution >= 0.75


def test_a_word_means_at_most_one_action():
    executor = scan_executor(hidden=8)
    probs = executor([scan_program(["walk"]), scan_program(["jump"])])
    assert probs[:, 1:, 0].min() > 0.999  # the blank after the first position, whatever the training
