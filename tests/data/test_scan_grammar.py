"""SCAN generated from its grammar: the command count, the meanings, the standard splits and their integrity."""

import pytest

from modnets.data import SCAN_SPLITS, ScanDataset, ScanPair, ScanSplit, scan_commands, scan_split
from modnets.errors import ConfigError

ALL = scan_commands()
MEANING = dict(ALL.pairs)


def interpret(words: list[str]) -> list[str]:
    """The interpretation function of Lake and Baroni (2018), written directly as a reference: split at the
    conjunction, then the repetition, then opposite / around / a direction."""
    for conjunction in ("and", "after"):
        if conjunction in words:
            i = words.index(conjunction)
            first, second = interpret(words[:i]), interpret(words[i + 1:])
            return first + second if conjunction == "and" else second + first
    if words[-1] in ("twice", "thrice"):
        return interpret(words[:-1]) * (2 if words[-1] == "twice" else 3)
    turn = {"left": ["I_TURN_LEFT"], "right": ["I_TURN_RIGHT"]}
    primitive = [] if words[0] == "turn" else ["I_" + words[0].upper()]
    if len(words) == 3 and words[1] == "opposite":
        return turn[words[2]] * 2 + primitive
    if len(words) == 3 and words[1] == "around":
        return (turn[words[2]] + primitive) * 4
    if len(words) == 2:
        return turn[words[1]] + primitive
    assert len(words) == 1 and words[0] != "turn"
    return primitive


def test_the_grammar_generates_exactly_20910_distinct_commands():
    assert isinstance(ALL, ScanDataset) and len(ALL) == 20_910
    assert len({pair.command for pair in ALL.pairs}) == 20_910
    assert ALL.command_words == ("after", "and", "around", "jump", "left", "look", "opposite", "right", "run",
                                 "thrice", "turn", "twice", "walk")
    assert ALL.action_words == ("I_JUMP", "I_LOOK", "I_RUN", "I_TURN_LEFT", "I_TURN_RIGHT", "I_WALK")
    assert max(len(pair.actions) for pair in ALL.pairs) == 48  # "x around right thrice and y around left thrice"


@pytest.mark.parametrize(
    ("command", "actions"),
    [
        ("jump twice after walk left", "I_TURN_LEFT I_WALK I_JUMP I_JUMP"),
        ("turn left twice", "I_TURN_LEFT I_TURN_LEFT"),
        ("look opposite right thrice", " ".join(["I_TURN_RIGHT I_TURN_RIGHT I_LOOK"] * 3)),
        ("walk around left", " ".join(["I_TURN_LEFT I_WALK"] * 4)),
        ("turn opposite right and look", "I_TURN_RIGHT I_TURN_RIGHT I_LOOK"),
        ("turn around right", " ".join(["I_TURN_RIGHT"] * 4)),
        ("run after jump right thrice", "I_TURN_RIGHT I_JUMP I_TURN_RIGHT I_JUMP I_TURN_RIGHT I_JUMP I_RUN"),
        ("jump", "I_JUMP"),
    ],
)
def test_known_pairs(command, actions):
    assert MEANING[tuple(command.split())] == tuple(actions.split())


def test_every_meaning_agrees_with_the_interpretation_function_written_directly():
    for pair in ALL.pairs:
        assert list(pair.actions) == interpret(list(pair.command)), pair.command


@pytest.mark.parametrize(
    ("name", "n_train", "n_test"),
    [("simple", 16_728, 4_182), ("length", 16_990, 3_920), ("addprim_jump", 13_204, 7_706),
     ("addprim_turn_left", 19_702, 1_208)],
)
def test_each_split_partitions_the_commands_with_the_published_test_sizes(name, n_train, n_test):
    split = scan_split(name)
    assert isinstance(split, ScanSplit) and (len(split.train), len(split.test)) == (n_train, n_test)
    train, test = {p.command for p in split.train.pairs}, {p.command for p in split.test.pairs}
    assert len(train) == n_train and len(test) == n_test  # no repetitions by default
    assert not train & test and len(train | test) == 20_910
    assert all(MEANING[p.command] == p.actions for p in split.train.pairs + split.test.pairs)


@pytest.mark.parametrize(("name", "primitive", "n_train"), [("addprim_jump", ("jump",), 14_670),
                                                            ("addprim_turn_left", ("turn", "left"), 21_890)])
def test_repeat_primitive_reproduces_the_released_training_files(name, primitive, n_train):
    split = scan_split(name, repeat_primitive=True)
    assert len(split.train) == n_train  # the sizes of tasks_train_addprim_*.txt
    copies = sum(p.command == primitive for p in split.train.pairs)
    assert copies * 10 == n_train  # the primitive is a tenth of the lines
    assert {p.command for p in split.train.pairs} == {p.command for p in scan_split(name).train.pairs}
    assert split.test.pairs == scan_split(name).test.pairs


def test_simple_split_is_a_seeded_random_partition():
    a, b, c = scan_split("simple", seed=0), scan_split("simple", seed=0), scan_split("simple", seed=1)
    assert a.train.pairs == b.train.pairs and a.test.pairs == b.test.pairs
    assert {p.command for p in a.test.pairs} != {p.command for p in c.test.pairs}
    words = {w for p in a.test.pairs for w in p.command}
    assert words == set(ALL.command_words)  # a random split holds out no word


def test_the_deterministic_splits_depend_on_the_seed_only_for_their_order():
    for name in ("length", "addprim_jump", "addprim_turn_left"):
        a, b = scan_split(name, seed=0), scan_split(name, seed=3)
        assert a.train.pairs != b.train.pairs
        assert sorted(a.train.pairs) == sorted(b.train.pairs) and sorted(a.test.pairs) == sorted(b.test.pairs)


def test_length_split_integrity():
    split = scan_split("length")
    assert max(len(p.actions) for p in split.train.pairs) == 22
    assert min(len(p.actions) for p in split.test.pairs) == 24  # no command has 23 actions


def test_addprim_jump_integrity_jump_occurs_in_training_only_as_the_bare_primitive():
    split = scan_split("addprim_jump", repeat_primitive=True)
    with_jump = [p for p in split.train.pairs if "jump" in p.command]
    assert with_jump and all(p == ScanPair(("jump",), ("I_JUMP",)) for p in with_jump)
    assert all("I_JUMP" not in p.actions for p in split.train.pairs if p.command != ("jump",))
    assert all("jump" in p.command and p.command != ("jump",) for p in split.test.pairs)


def test_addprim_turn_left_integrity_the_phrase_occurs_in_training_only_as_the_bare_primitive():
    split = scan_split("addprim_turn_left", repeat_primitive=True)

    def has_turn_left(words):
        return any(words[i:i + 2] == ("turn", "left") for i in range(len(words) - 1))

    in_train = [p for p in split.train.pairs if has_turn_left(p.command)]
    assert in_train and all(p == ScanPair(("turn", "left"), ("I_TURN_LEFT",)) for p in in_train)
    assert all(has_turn_left(p.command) and p.command != ("turn", "left") for p in split.test.pairs)
    # as in the released split, the action I_TURN_LEFT is trained through other phrases ("walk left", ...)
    assert any("I_TURN_LEFT" in p.actions and "turn" not in p.command for p in split.train.pairs)


def test_bad_split_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="unknown SCAN split 'jump'; known splits: simple, length, addprim_jump, "
                                          "addprim_turn_left"):
        scan_split("jump")
    with pytest.raises(ConfigError, match="repeat_primitive applies to the add-primitive splits"):
        scan_split("simple", repeat_primitive=True)
    with pytest.raises(ConfigError, match="seed must be an int"):
        scan_split("simple", seed=0.5)
    assert SCAN_SPLITS == ("simple", "length", "addprim_jump", "addprim_turn_left")
