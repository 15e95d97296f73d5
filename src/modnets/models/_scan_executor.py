"""A grammar-given modular executor for SCAN: typed modules composed by the parse of the command.

As an NMN is given its program, the executor is given its layout by SCAN's grammar (see
:mod:`modnets.data._scan_grammar`): :func:`scan_program` parses a command into a program of module calls,
one module per production, and a :class:`~modnets.compose.Library` runs a batch of different layouts at
once. ``jump around left twice after walk`` becomes::

    after(repeat[twice](around[left](action[jump])), action[walk])

The neural data type on every interface is an **action sequence**: ``(batch, T, 1 + A)`` probabilities,
one categorical distribution per position over the blank (index 0: no action, the sequence has ended) and
the ``A = 6`` actions of :data:`SCAN_ACTIONS` (index ``1 + i``); it is typed ``Probs(1 + A)``. The modules:

- ``action[walk | look | run | jump | turn]`` (:class:`ActionLexicon`): a learned action (or the blank) per
  word at the first position, the blank after it (the bare ``turn`` of ``turn left`` should learn the blank);
- ``turn[left | right](x)`` (the ``D`` production: ``walk left`` = ``I_TURN_LEFT I_WALK``),
  ``opposite[left | right](x)``, ``around[left | right](x)``, ``repeat[twice | thrice](x)``, ``and(x1,
  x2)``, ``after(x1, x2)``: :class:`CopyModule` s, one instance per argument value.

A :class:`CopyModule` writes each output position as a mixture of *sources*: every position of its
inputs, a few learned constant action distributions and the blank. Where it copies from is decided by a
small MLP that reads only the inputs' *occupancy* (``1 - p(blank)`` at each position: where the inputs have
actions, not which actions), so a module learns a function of its inputs' lengths (``repeat[twice]`` on
a length-3 input copies positions 0, 1, 2, 0, 1, 2) and cannot look at the content it copies.

What this can and cannot learn, honestly:

- Add-primitive generalisation needs two things, neither of which is modularity alone: content-blind
  copying (every composition module copies whatever action sits at a position, so ``jump twice`` can work
  as soon as ``walk twice`` does; a module reading a vector encoding would see the untrained ``jump``
  vector out of distribution), and interfaces whose *encoding* is pinned down. Only the root is
  supervised, so the intermediate sequences need not be their phrase's meaning: with a free lexicon table
  the words used in compositions drifted to an encoding the copy modules had learned to read while the
  ``jump`` trained alone did not (in-distribution 45 %, add-jump 1 % after 1,165 steps). The lexicon is
  therefore typed as the grammar says: a word means one action (or none) at the first position.
  Intermediate outputs of the copy modules are still free to co-adapt with their readers.
- Length generalisation is not built in: the copy pattern is an MLP of the occupancy profile, and input
  lengths (or pairs of lengths, for ``and`` / ``after``) never seen in training give untrained patterns.
  On the ``"length"`` split ``repeat[thrice]`` never sees an input of 8 actions (``around``), so
  ``walk around left thrice`` (24 actions) is out of its range.
- The layout is given, not learned: the parse is the grammar's, which is exactly the information a
  seq2seq model has to discover. A comparison with the seq2seq baselines measures what a given layout
  plus this inductive bias buys, not what modularity learns by itself.

Example:
    >>> import torch
    >>> executor = scan_executor(hidden=16)
    >>> programs = [scan_program(("jump", "twice")), scan_program(("walk", "left", "and", "run"))]
    >>> str(programs[0])
    'repeat[twice](action[jump])'
    >>> executor(programs).shape
    torch.Size([2, 48, 7])
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..compose import Library, Program
from ..errors import ConfigError, ProgramSyntaxError, ShapeError
from ..modules import MLP, PerArgument, Signature, TypedModule
from ..types import Probs

__all__ = ["SCAN_ACTIONS", "SCAN_MAX_ACTIONS", "ActionLexicon", "CopyModule", "ScanExecutor", "decode_actions",
           "scan_executor", "scan_program"]

#: The SCAN actions; in an action sequence tensor, action ``i`` is class ``1 + i`` and class 0 is the blank.
SCAN_ACTIONS = ("I_WALK", "I_LOOK", "I_RUN", "I_JUMP", "I_TURN_LEFT", "I_TURN_RIGHT")
#: The longest action sequence of any SCAN command (``x around left thrice and y around right thrice``).
SCAN_MAX_ACTIONS = 48

_WORDS = ("walk", "look", "run", "jump", "turn")
_DIRECTIONS = ("left", "right")
_REPEATS = ("twice", "thrice")
_CONJUNCTIONS = ("and", "after")


def _error(message: str, command: tuple[str, ...], word: int) -> ProgramSyntaxError:
    """A syntax error at the ``word``-th word of ``command`` (its position is a character offset)."""
    return ProgramSyntaxError(message, text=" ".join(command), position=len(" ".join(command[:word] + ("",))))


def _phrase(command: tuple[str, ...], start: int, stop: int) -> Program:
    """The program of the ``S`` phrase ``command[start:stop]``: a ``V``, optionally followed by ``twice`` /
    ``thrice``."""
    words = command[start:stop]
    repeat = None
    if words and words[-1] in _REPEATS:
        repeat, words = words[-1], words[:-1]
    if not words or words[0] not in _WORDS:
        got = repr(words[0]) if words else "nothing"
        raise _error(f"a SCAN phrase starts with one of {', '.join(_WORDS)}, got {got}", command, start)
    head = Program("action", words[0])
    if len(words) == 1 and words[0] != "turn":
        v = head
    elif len(words) == 2 and words[1] in _DIRECTIONS:
        v = Program("turn", words[1], (head,))
    elif len(words) == 3 and words[1] in ("opposite", "around") and words[2] in _DIRECTIONS:
        v = Program(words[1], words[2], (head,))
    else:
        raise _error(f"not a SCAN phrase: {' '.join(words)!r} (expected U, U left, U opposite left, U around "
                     "left, ... with U one of walk, look, run, jump, or turn and a direction)", command, start)
    return v if repeat is None else Program("repeat", repeat, (v,))


@functools.lru_cache(maxsize=32_768)
def _parse(words: tuple[str, ...]) -> Program:
    joins = [i for i, w in enumerate(words) if w in _CONJUNCTIONS]
    if len(joins) > 1:
        raise _error("a SCAN command joins at most two phrases", words, joins[1])
    if not joins:
        return _phrase(words, 0, len(words))
    i = joins[0]
    return Program(words[i], None, (_phrase(words, 0, i), _phrase(words, i + 1, len(words))))


def scan_program(command: Sequence[str]) -> Program:
    """The layout of a SCAN command: its parse by the grammar, as a program of the executor's modules.

    ``x and y`` is ``and(X, Y)``, ``x after y`` is ``after(X, Y)`` (the module must learn to put ``Y``
    first); ``v twice`` is ``repeat[twice](V)``; ``u left`` is ``turn[left](action[u])``, ``turn left`` is
    ``turn[left](action[turn])``; ``u opposite left`` and ``u around left`` are ``opposite[left](...)`` and
    ``around[left](...)``.

    Args:
        command: the command's words, e.g. ``("jump", "twice", "after", "walk", "left")``.

    Returns:
        the program (parses are cached).

    Raises:
        ProgramSyntaxError: not a SCAN command; ``position`` is the character offset of the offending word in
            the command's text (its words joined by spaces).

    Example:
        >>> str(scan_program("jump twice after walk left".split()))
        'after(repeat[twice](action[jump]), turn[left](action[walk]))'
    """
    if isinstance(command, str) or not all(isinstance(w, str) for w in command):
        raise ProgramSyntaxError(f"a SCAN command is a sequence of words, got {command!r}", text=str(command),
                                 position=0)
    return _parse(tuple(command))


def decode_actions(probs: Tensor) -> Tensor:
    """Read action sequences off their distributions: the most likely class at each position, cut at the
    first blank.

    Args:
        probs: ``(batch, T, 1 + A)`` action-sequence probabilities.

    Returns:
        ``(batch, T)`` long: action classes ``1 + i``, then 0 from the first blank on.
    """
    if probs.dim() != 3:
        raise ShapeError(f"probs must be (batch, T, 1 + A), got shape {tuple(probs.shape)}")
    best = probs.argmax(-1)  # (B, T)
    ended = (best == 0).long().cummax(1).values.bool()
    return best.masked_fill(ended, 0)


class ActionLexicon(TypedModule):
    """``action[word]``: the action sequence a word means: learned logits for the first ``span`` positions,
    the blank after them.

    ``span=1`` is the lexicon's type in SCAN's grammar (a word means at most one action; ``turn`` should learn
    the blank). It matters for generalisation: with a free table (``span=length``) only the root is
    supervised, the words used inside compositions drift to whatever encoding the copy modules learn to read
    (measured: ``walk`` became ``I_TURN_RIGHT I_WALK I_TURN_LEFT`` with the copy modules picking the middle),
    while a word trained alone (``jump`` on the add-primitive split) keeps its plain meaning, which the copy
    modules then misread.

    Args:
        words: the argument vocabulary.
        length: ``T``, positions per sequence.
        n_actions: ``A``.
        span: positions with learned logits (1 to ``length``).
    """

    def __init__(self, words: Sequence[str] = _WORDS, *, length: int = SCAN_MAX_ACTIONS,
                 n_actions: int = len(SCAN_ACTIONS), span: int = 1) -> None:
        super().__init__(Signature(output=Probs(1 + n_actions)), arguments=words)
        if not isinstance(span, int) or not 1 <= span <= length:
            raise ConfigError(f"span must be an int in [1, {length}], got span={span!r}")
        self.logits = nn.Parameter(torch.zeros(len(self.arguments), span, 1 + n_actions))
        rest = torch.full((length - span, 1 + n_actions), -30.0)
        rest[:, 0] = 0.0
        self.register_buffer("rest", rest, persistent=False)  # (T - span, 1 + A) logits of the blank

    def compute(self, *, arg: Tensor | None = None) -> Tensor:
        """``(n, T, 1 + A)`` logits of the words ``arg: (n,)``."""
        return torch.cat([self.logits[arg], self.rest.expand(arg.shape[0], -1, -1)], 1)


class CopyModule(TypedModule):
    """A composition module: each output position is a mixture of the inputs' positions, learned
    constants and the blank, mixed by weights that depend only on where the inputs have actions.

    With ``arity`` inputs of ``T`` positions, ``constants`` learned distributions and the blank there are
    ``S = arity * T + constants + 1`` sources; an MLP maps the inputs' occupancy ``(n, arity * T)`` to
    ``(n, T, S)`` logits, and output position ``j`` is ``sum_s softmax_s(logits[j]) * source[s]``. The
    output stays a distribution, so no ``constrain`` is applied.

    Args:
        arity: 1 or 2 inputs.
        length: ``T``.
        n_actions: ``A``.
        constants: learned constant distributions (``turn[left]`` needs one: ``I_TURN_LEFT``).
        hidden: widths of the MLP's hidden layers.
    """

    constrains_output = False

    def __init__(self, arity: int, *, length: int = SCAN_MAX_ACTIONS, n_actions: int = len(SCAN_ACTIONS),
                 constants: int = 1, hidden: Sequence[int] = (128,), identity: float = 4.0) -> None:
        if arity not in (1, 2):
            raise ConfigError(f"CopyModule arity must be 1 or 2, got arity={arity!r}")
        if not isinstance(constants, int) or constants < 0:
            raise ConfigError(f"CopyModule constants must be an int >= 0, got constants={constants!r}")
        kind = Probs(1 + n_actions)
        names = ("x",) if arity == 1 else ("x1", "x2")
        super().__init__(Signature(inputs={n: kind for n in names}, output=kind))
        self.length, self.n_sources = length, arity * length + constants + 1
        self.constants = nn.Parameter(torch.zeros(constants, 1 + n_actions))
        self.pattern = MLP(arity * length, length * self.n_sources, hidden)
        self.register_buffer("blank", torch.eye(1, 1 + n_actions), persistent=False)  # (1, 1 + A)
        # start as the identity on the first input (position j copies position j), so that gradients reach
        # the lexicon through every layout from the first step, not through a uniform blur of all sources
        last = self.pattern.net[-1]
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.view(length, self.n_sources).copy_(identity * torch.eye(length, self.n_sources))

    def compute(self, *inputs: Tensor, arg: Tensor | None = None) -> Tensor:
        """``(n, T, 1 + A)`` from ``arity`` inputs ``(n, T, 1 + A)``."""
        for x in inputs:
            if x.dim() != 3 or x.shape[1] != self.length:
                raise ShapeError(f"module {self.label!r} reads (n, {self.length}, classes) sequences, got "
                                 f"{tuple(x.shape)}")
        n = inputs[0].shape[0]
        occupancy = torch.cat([1 - x[..., 0] for x in inputs], 1)  # (n, arity * T)
        weights = self.pattern(occupancy).view(n, self.length, self.n_sources).softmax(-1)  # (n, T, S)
        fixed = torch.cat([self.constants.softmax(-1), self.blank]).expand(n, -1, -1)  # (n, C + 1, 1 + A)
        sources = torch.cat([*inputs, fixed], 1)  # (n, S, 1 + A)
        return torch.bmm(weights, sources)


class ScanExecutor(nn.Module):
    """The SCAN executor: a :class:`~modnets.compose.Library` of typed modules run on the commands' parses.

    Args:
        library: the modules named by :func:`scan_program`'s programs (``action``, ``turn``,
            ``opposite``, ``around``, ``repeat``, ``and``, ``after``).

    Example:
        >>> executor = scan_executor(hidden=8)
        >>> executor.actions([scan_program(["walk"])]).shape
        torch.Size([1, 48])
    """

    def __init__(self, *, library: Library) -> None:
        super().__init__()
        self.library = library

    def forward(self, programs: Sequence[Program]) -> Tensor:
        """``(batch, T, 1 + A)`` action-sequence probabilities, one program per example."""
        return self.library(programs)

    @torch.no_grad()
    def actions(self, programs: Sequence[Program]) -> Tensor:
        """``(batch, T)`` long: the decoded action classes (``1 + i``, 0 after the end); see
        :func:`decode_actions`."""
        return decode_actions(self(programs))


def scan_executor(*, length: int = SCAN_MAX_ACTIONS, hidden: int = 128, constants: int = 1,
                  span: int = 1) -> ScanExecutor:
    """The SCAN executor preset: an :class:`ActionLexicon` and a :class:`CopyModule` per argument value of
    each composing production.

    Args:
        length: ``T``, the positions of every action sequence (48 holds every SCAN command).
        hidden: the width of each copy module's MLP (one hidden layer).
        constants: learned constants per copy module.
        span: positions of each word's meaning that the lexicon learns (see :class:`ActionLexicon`).

    Returns:
        the executor (about 3.8 M parameters at the defaults, most of them in the MLPs' last layers).
    """
    if not isinstance(hidden, int) or hidden < 1:
        raise ConfigError(f"hidden must be a positive int, got hidden={hidden!r}")

    def copy(arity: int):
        return lambda _value=None: CopyModule(arity, length=length, constants=constants, hidden=(hidden,))

    return ScanExecutor(library=Library({
        "action": ActionLexicon(length=length, span=span),
        "turn": PerArgument(copy(1), _DIRECTIONS),
        "opposite": PerArgument(copy(1), _DIRECTIONS),
        "around": PerArgument(copy(1), _DIRECTIONS),
        "repeat": PerArgument(copy(1), _REPEATS),
        "and": copy(2)(),
        "after": copy(2)(),
    }))
