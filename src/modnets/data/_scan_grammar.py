"""SCAN generated from its grammar (Lake and Baroni, 2018): every command, its meaning, the standard splits.

The phrase-structure grammar of the paper (its Figure 6 and appendix), written here production by
production::

    C -> S and S | S after S | S
    S -> V twice | V thrice | V
    V -> D[1] opposite D[2] | D[1] around D[2] | D | U
    D -> U left | U right | turn left | turn right
    U -> walk | look | run | jump

``D[1]`` and ``D[2]`` are the two words of a ``D`` (``jump left`` gives ``jump opposite left``, ``turn
right`` gives ``turn around right``). The interpretation function maps a command to its actions::

    [[walk]] = I_WALK  [[look]] = I_LOOK  [[run]] = I_RUN  [[jump]] = I_JUMP
    [[turn left]] = I_TURN_LEFT            [[turn right]] = I_TURN_RIGHT
    [[u left]] = I_TURN_LEFT [[u]]         [[u right]] = I_TURN_RIGHT [[u]]
    [[x twice]] = [[x]] [[x]]              [[x thrice]] = [[x]] [[x]] [[x]]
    [[x opposite left]] = [[turn left]] [[turn left]] [[x]]          (likewise right)
    [[x around left]] = ([[turn left]] [[x]]) four times             (likewise right)
    [[x1 and x2]] = [[x1]] [[x2]]          [[x1 after x2]] = [[x2]] [[x1]]

where the bare ``turn`` of ``turn opposite left`` and ``turn around left`` means nothing (``[[turn]]`` is
empty: ``turn opposite left`` = ``I_TURN_LEFT I_TURN_LEFT``), as in the released files. The grammar is
unambiguous and generates 34 ``V``, 102 ``S`` and 102 + 2 * 102 ** 2 = 20,910 distinct commands.

Splits (:data:`SCAN_SPLITS`; ``train`` and ``test`` partition the 20,910 commands, each command once,
except for the primitive's repetitions under ``repeat_primitive=True``):

- ``"simple"``: a seeded random 80 / 20 split: 16,728 / 4,182, the sizes of the released
  ``tasks_{train,test}_simple.txt`` (the released partition is one particular random draw; this one is
  drawn from ``seed``).
- ``"length"``: train on the commands whose action sequence has at most 22 actions, test on the longer
  ones: 16,990 / 3,920, exactly the released split.
- ``"addprim_jump"``: train on every command without ``jump`` plus the primitive ``jump`` itself, test on
  every other command with ``jump``: 13,204 distinct training commands / 7,706 test commands. The
  released test file is exactly this test set; the released training file (14,670 lines) holds the
  13,203 jump-free commands and the line ``jump`` repeated 1,467 times, so that the primitive is a tenth
  of the lines: ``repeat_primitive=True`` reproduces that.
- ``"addprim_turn_left"``: test on every command containing the two words ``turn left`` except the
  primitive ``turn left`` itself (1,208 commands, the released test file), train on all the others plus
  that primitive (19,702 distinct commands). ``I_TURN_LEFT`` does occur in training, in the meanings of
  ``walk left``, ``jump opposite left``, ``turn around left``, ...: the split holds out the *phrase* ``turn
  left`` in composition, not the action. The released training file (21,890 lines) repeats the primitive
  2,189 times (again a tenth of the lines): ``repeat_primitive=True`` reproduces that.

Within a split, the order of the examples is a seeded shuffle (the released files are shuffled too);
only ``"simple"`` depends on the seed for which commands go where.
"""

from __future__ import annotations

import functools
import random
from typing import NamedTuple

from ..errors import ConfigError
from ._scan import ScanDataset, ScanPair

__all__ = ["SCAN_SPLITS", "ScanSplit", "scan_commands", "scan_split"]

#: The standard SCAN splits :func:`scan_split` builds.
SCAN_SPLITS = ("simple", "length", "addprim_jump", "addprim_turn_left")

_PRIMITIVES = {"walk": "I_WALK", "look": "I_LOOK", "run": "I_RUN", "jump": "I_JUMP"}
_TURN = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
_MAX_TRAIN_LENGTH = 22  # the "length" split: at most 22 actions in training
_SIMPLE_TRAIN_SHARE = 0.8

_Phrase = tuple[tuple[str, ...], tuple[str, ...]]  # (words, actions)


class ScanSplit(NamedTuple):
    """A SCAN split: its training and test examples."""

    train: ScanDataset
    test: ScanDataset


def _u() -> list[_Phrase]:
    """U -> walk | look | run | jump."""
    return [((word,), (action,)) for word, action in _PRIMITIVES.items()]


def _d_parts() -> list[tuple[tuple[str, ...], tuple[str, ...], str]]:
    """D -> U left | U right | turn left | turn right, as (D[1] words, [[D[1]]], D[2]); [[turn]] is empty."""
    return ([(u, meaning, "left") for u, meaning in _u()] + [(u, meaning, "right") for u, meaning in _u()]
            + [(("turn",), (), "left"), (("turn",), (), "right")])


def _v() -> list[_Phrase]:
    """V -> D[1] opposite D[2] | D[1] around D[2] | D | U."""
    parts = _d_parts()
    opposite = [(first + ("opposite", direction), (_TURN[direction],) * 2 + meaning)
                for first, meaning, direction in parts]
    around = [(first + ("around", direction), ((_TURN[direction],) + meaning) * 4)
              for first, meaning, direction in parts]
    d = [(first + (direction,), (_TURN[direction],) + meaning) for first, meaning, direction in parts]
    return opposite + around + d + _u()


def _s() -> list[_Phrase]:
    """S -> V twice | V thrice | V."""
    v = _v()
    return ([(w + ("twice",), a * 2) for w, a in v] + [(w + ("thrice",), a * 3) for w, a in v] + v)


@functools.cache
def _all_pairs() -> tuple[ScanPair, ...]:
    """C -> S and S | S after S | S, in the order of the productions."""
    s = _s()
    pairs = [ScanPair(w1 + ("and",) + w2, a1 + a2) for w1, a1 in s for w2, a2 in s]
    pairs += [ScanPair(w1 + ("after",) + w2, a2 + a1) for w1, a1 in s for w2, a2 in s]
    pairs += [ScanPair(w, a) for w, a in s]
    return tuple(pairs)


def scan_commands() -> ScanDataset:
    """Every SCAN command with its action sequence, generated from the grammar (see the module docstring).

    Returns:
        a :class:`ScanDataset` of the 20,910 distinct commands, in the order of the grammar's productions
        (``C -> S and S`` first, then ``S after S``, then ``S``).

    Example:
        >>> data = scan_commands()
        >>> len(data)
        20910
        >>> dict(data.pairs)[("jump", "twice", "after", "walk", "left")]
        ('I_TURN_LEFT', 'I_WALK', 'I_JUMP', 'I_JUMP')
    """
    return ScanDataset(_all_pairs())


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(words[i:i + n] == phrase for i in range(len(words) - n + 1))


#: The primitive each add-primitive split holds out of composition.
_HELD_OUT = {"addprim_jump": ("jump",), "addprim_turn_left": ("turn", "left")}


def _is_test(name: str, pair: ScanPair) -> bool:
    """Whether a command belongs to the test set of a deterministic split (``"length"`` or add-primitive)."""
    if name == "length":
        return len(pair.actions) > _MAX_TRAIN_LENGTH
    primitive = _HELD_OUT[name]
    return pair.command != primitive and _contains(pair.command, primitive)


def scan_split(name: str, *, seed: int = 0, repeat_primitive: bool = False) -> ScanSplit:
    """A standard SCAN split of the generated commands (see the module docstring for each split and how it
    relates to the released files).

    Args:
        name: one of :data:`SCAN_SPLITS`: ``"simple"``, ``"length"``, ``"addprim_jump"``,
            ``"addprim_turn_left"``.
        seed: the seed of the ``"simple"`` split's random partition and of every split's example order.
        repeat_primitive: for the add-primitive splits, repeat the primitive in training until it is a
            tenth of the training examples, as the released training files do (14,670 examples for
            ``"addprim_jump"``, 21,890 for ``"addprim_turn_left"``); by default it appears once.

    Returns:
        :class:`ScanSplit` ``(train, test)`` of :class:`ScanDataset` s.

    Raises:
        ConfigError: an unknown split name (the message lists the known ones), a seed that is not an int,
            or ``repeat_primitive`` for a split without a primitive.

    Example:
        >>> split = scan_split("length")
        >>> len(split.train), len(split.test)
        (16990, 3920)
        >>> max(len(p.actions) for p in split.train), min(len(p.actions) for p in split.test)
        (22, 24)
    """
    if name not in SCAN_SPLITS:
        raise ConfigError(f"unknown SCAN split {name!r}; known splits: {', '.join(SCAN_SPLITS)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an int, got seed={seed!r}")
    if not isinstance(repeat_primitive, bool):
        raise ConfigError(f"repeat_primitive must be True or False, got repeat_primitive={repeat_primitive!r}")
    if repeat_primitive and name not in _HELD_OUT:
        raise ConfigError(f"repeat_primitive applies to the add-primitive splits ({', '.join(_HELD_OUT)}), "
                          f"not to {name!r}")
    pairs = list(_all_pairs())
    rng = random.Random(seed)
    if name == "simple":
        rng.shuffle(pairs)
        cut = round(_SIMPLE_TRAIN_SHARE * len(pairs))
        train, test = pairs[:cut], pairs[cut:]
    else:
        train = [p for p in pairs if not _is_test(name, p)]
        test = [p for p in pairs if _is_test(name, p)]
        rng.shuffle(test)  # first: the test order does not depend on repeat_primitive
        if repeat_primitive:
            primitive = next(p for p in train if p.command == _HELD_OUT[name])
            copies = round((len(train) - 1) / 9)  # a tenth of the lines, as in the released training files
            train += [primitive] * (copies - 1)
        rng.shuffle(train)
    return ScanSplit(ScanDataset(train), ScanDataset(test))
