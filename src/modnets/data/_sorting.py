"""List sorting (thesis 3.2.1): lists of digits, pointers A and B, selection-sort traces, input noise.

The environment holds lists of digits 0-9 on a tape of ``L`` positions (lists shorter than the tape end
in *null* positions), and two pointers A and B. Five operations act on it: ``mova`` and ``movb`` move a
pointer one position to the right, ``retb`` returns B to the position right after A, ``swap`` exchanges
the digits under A and B, and ``eop`` ends the execution. The start state has A at the first and B at the
second position; a final state has both at the list's last position; the target is the final state
with the list sorted.

The representation R(t) has three fields: ``digits`` ``(batch, L, 10)`` one-hot digits (zero vectors at
null positions) and the pointers ``a`` and ``b``, ``(batch, L)`` one-hot along the sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..agents import Environment, Interface, Representation, Trace
from ..errors import ConfigError, ShapeError
from ..types import Pointer, uniform_noise

__all__ = [
    "N_DIGITS",
    "OPERATIONS",
    "SortingEnvironment",
    "SortingInterface",
    "SortingLists",
    "SortingState",
    "augment_sorting",
    "expert_trace",
    "max_trace_length",
    "sample_lists",
    "selection_sort_policy",
    "selection_sort_trace",
    "sorting_episodes",
    "sorting_potential",
    "sorting_step_bound",
    "sorting_traces",
]

#: The actions, in index order; ``eop`` (the last) is the stop action.
OPERATIONS: tuple[str, ...] = ("mova", "movb", "retb", "swap", "eop")
MOVA, MOVB, RETB, SWAP, EOP = range(5)
#: Digits 0-9.
N_DIGITS = 10


class SortingLists(NamedTuple):
    """A batch of lists on a tape.

    Attributes:
        values: ``(batch, L)`` long digits, ``-1`` past each list's end.
        lengths: ``(batch,)`` long list lengths (>= 2).
    """

    values: Tensor
    lengths: Tensor


class SortingState(NamedTuple):
    """The environment's state.

    Attributes:
        values: ``(batch, L)`` long digit at each position, ``-1`` past the list's end (or where a decoded
            representation held no digit).
        lengths: ``(batch,)`` long list lengths.
        a: ``(batch,)`` long position of pointer A, ``-1`` when it is not a valid position in the list.
        b: ``(batch,)`` long position of pointer B, likewise.
    """

    values: Tensor
    lengths: Tensor
    a: Tensor
    b: Tensor


def max_trace_length(length: int) -> int:
    """Most actions selection sort takes on a list of ``length`` digits, ``eop`` included: ``length**2 - 1``.

    Each round ``i`` compares ``length - 1 - i`` times (each comparison may swap) with one ``movb`` between
    comparisons, then ``mova``; every round but the last then ``retb``; the end is ``eop``.
    """
    if length < 2:
        raise ConfigError(f"lists have at least 2 digits, got length {length}")
    return length * length - 1


def sorting_step_bound(rep: Representation) -> int:
    """The step bound of a sorting agent on R(0): the longest trace on its tape, plus one step per position."""
    length = rep["a"].shape[-1]
    return max_trace_length(length) + length


def sample_lists(
    batch_size: int,
    *,
    min_length: int = 2,
    max_length: int = 7,
    width: int | None = None,
    generator: torch.Generator | None = None,
) -> SortingLists:
    """Random lists of digits 0-9 with lengths uniform in ``[min_length, max_length]``.

    Args:
        batch_size: number of lists.
        min_length: shortest list (>= 2).
        max_length: longest list.
        width: tape width, at least ``max_length`` (default: the longest sampled length).
        generator: random source.

    Returns:
        values ``(batch_size, L)`` with ``L`` the tape width (``-1`` past each end), lengths.

    Example:
        >>> lists = sample_lists(3, min_length=2, max_length=4, generator=torch.Generator().manual_seed(0))
        >>> lists.values.shape[0], bool((lists.lengths >= 2).all())
        (3, True)
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    if not 2 <= min_length <= max_length:
        raise ConfigError(f"need 2 <= min_length <= max_length, got min_length={min_length}, max_length={max_length}")
    if width is not None and (not isinstance(width, int) or width < max_length):
        raise ConfigError(f"width must be an int >= max_length ({max_length}), got {width!r}")
    lengths = torch.randint(min_length, max_length + 1, (batch_size,), generator=generator)
    width = int(lengths.max()) if width is None else width
    values = torch.randint(0, N_DIGITS, (batch_size, width), generator=generator)
    values = torch.where(torch.arange(width) < lengths[:, None], values, -1)
    return SortingLists(values, lengths)


def selection_sort_trace(values: Sequence[int]) -> list[str]:
    """The operations selection sort performs on one list, from A=0, B=1 to ``eop``.

    A stays at position ``i`` while B scans the rest of the list; whenever B finds a smaller digit the two
    are swapped, so after the scan position ``i`` holds the minimum of the rest.

    Example:
        >>> selection_sort_trace([3, 1, 2])
        ['swap', 'movb', 'mova', 'retb', 'swap', 'mova', 'eop']
    """
    xs = list(values)
    if len(xs) < 2:
        raise ConfigError(f"lists have at least 2 digits, got {xs!r}")
    ops = []
    for i in range(len(xs) - 1):
        if i > 0:
            ops.append("retb")
        for j in range(i + 1, len(xs)):
            if j > i + 1:
                ops.append("movb")
            if xs[j] < xs[i]:
                xs[i], xs[j] = xs[j], xs[i]
                ops.append("swap")
        ops.append("mova")
    ops.append("eop")
    return ops


def selection_sort_policy(state: SortingState, previous: Tensor) -> Tensor:
    """The next selection-sort action for each example, from its state and its previous action.

    The previous action is needed right after ``mova``: the state then looks like a comparison in the next
    round, but the next action is ``retb``.

    Args:
        state: the environment's state (valid pointers).
        previous: ``(batch,)`` long previous action, ``-1`` at the start.

    Returns:
        ``(batch,)`` long action indices into :data:`OPERATIONS`.
    """
    last = state.lengths - 1
    va = state.values.gather(1, state.a.clamp_min(0)[:, None]).squeeze(1)
    vb = state.values.gather(1, state.b.clamp_min(0)[:, None]).squeeze(1)
    final = (state.a == last) & (state.b == last)
    act = torch.where(state.b < last, MOVB, MOVA)
    act = torch.where(vb < va, SWAP, act)
    act = torch.where(previous == MOVA, RETB, act)
    return torch.where(final, EOP, act)


class SortingEnvironment(Environment):
    """Lists of digits with two pointers; the five operations of thesis 3.2.1 as true dynamics.

    Moving a pointer past the list's last digit makes it invalid (``-1``), as does ``retb`` when A is on the
    last digit; ``swap`` with an invalid pointer changes nothing. Actions on examples that are :attr:`done`
    are ignored.

    Example:
        >>> env = SortingEnvironment()
        >>> _ = env.reset(torch.tensor([[2, 1]]))
        >>> for op in ["swap", "mova", "eop"]:
        ...     _ = env.step(torch.tensor([OPERATIONS.index(op)]))
        >>> env.state.values.tolist(), bool(env.is_target()), bool(env.done)
        ([[1, 2]], True, True)
    """

    action_names = OPERATIONS

    def __init__(self) -> None:
        self._state: SortingState | None = None
        self._sorted: Tensor | None = None
        self._done: Tensor | None = None

    def reset(self, values: Tensor, lengths: Tensor | None = None) -> SortingState:
        """Start from lists ``values`` ``(batch, L)`` (``-1`` past each end), A at 0 and B at 1.

        Args:
            values: ``(batch, L)`` long digits 0-9, ``-1`` after each list's end.
            lengths: ``(batch,)`` list lengths; default: the number of digits in each row.

        Raises:
            ShapeError: ``values`` is not 2-d.
            ConfigError: digits outside 0-9, lists shorter than 2, or ``-1`` inside a list.
        """
        if not isinstance(values, Tensor) or values.dim() != 2:
            raise ShapeError(f"values must be a (batch, L) tensor, got {getattr(values, 'shape', values)!r}")
        values = values.long()
        if lengths is None:
            lengths = (values >= 0).sum(1)
        lengths = lengths.long()
        inside = torch.arange(values.shape[1]) < lengths[:, None]
        if bool(((values < 0) | (values >= N_DIGITS))[inside].any()):
            raise ConfigError("values must be digits 0-9 inside each list (and -1 after its end)")
        if bool((lengths < 2).any()) or bool((lengths > values.shape[1]).any()):
            raise ConfigError(f"list lengths must be in [2, {values.shape[1]}], got {lengths.tolist()}")
        values = torch.where(inside, values, -1)
        b = values.shape[0]
        self._state = SortingState(values, lengths, torch.zeros(b, dtype=torch.long), torch.ones(b, dtype=torch.long))
        big = torch.where(inside, values, N_DIGITS)  # sort the nulls to the end
        self._sorted = torch.where(inside, big.sort(dim=1).values, -1)
        self._done = torch.zeros(b, dtype=torch.bool)
        return self._state

    @property
    def state(self) -> SortingState:
        if self._state is None:
            raise ConfigError("the environment has no problems yet; call reset(values) first")
        return self._state

    def set_state(self, state: SortingState) -> None:
        old = self.state
        if state.values.shape != old.values.shape:
            raise ShapeError(f"state values must keep shape {tuple(old.values.shape)}, got {tuple(state.values.shape)}")
        self._state = SortingState(state.values, old.lengths, state.a, state.b)

    @property
    def done(self) -> Tensor:
        self.state  # noqa: B018 -- raises before reset
        return self._done

    def step(self, actions: Tensor) -> SortingState:
        s = self.state
        if actions.shape != s.lengths.shape:
            raise ShapeError(f"actions must be ({s.lengths.shape[0]},), got {tuple(actions.shape)}")
        actions = torch.where(self._done, -1, actions)
        last = s.lengths - 1

        def moved(p: Tensor) -> Tensor:
            return torch.where((p >= 0) & (p < last), p + 1, -1)

        a = torch.where(actions == MOVA, moved(s.a), s.a)
        b = torch.where(actions == MOVB, moved(s.b), s.b)
        b = torch.where(actions == RETB, moved(s.a), b)
        swap = (actions == SWAP) & (s.a >= 0) & (s.b >= 0)
        rows = swap.nonzero().squeeze(1)
        values = s.values.clone()
        if rows.numel():
            ia, ib = s.a[rows], s.b[rows]
            va, vb = values[rows, ia], values[rows, ib]
            values[rows, ia], values[rows, ib] = vb, va
        self._done = self._done | (actions == EOP)
        self._state = SortingState(values, s.lengths, a, b)
        return self._state

    def is_target(self) -> Tensor:
        s = self.state
        last = s.lengths - 1
        return (s.values == self._sorted).all(1) & (s.a == last) & (s.b == last)

    def is_sorted(self) -> Tensor:
        """``(batch,)`` bool: the list is the sorted original list (wherever the pointers are)."""
        return (self.state.values == self._sorted).all(1)


class SortingInterface(Interface):
    """Encodes a :class:`SortingEnvironment` as R(t) (one-hot digits and pointers) and decodes R(t) back.

    Decoding takes each position's most likely digit (a position of the list whose digit vector holds less
    than 0.5 in total decodes as no digit, ``-1``) and a pointer's position when exactly one of its values
    is above 0.5 (the thesis' validity test) and that position is in the list; otherwise ``-1``.
    """

    environment: SortingEnvironment

    def read(self) -> Representation:
        s = self.environment.state
        width = s.values.shape[1]
        digits = torch.nn.functional.one_hot(s.values.clamp_min(0), N_DIGITS).float() * (s.values >= 0)[..., None]
        return Representation(digits=digits, a=_encode_pointer(s.a, width), b=_encode_pointer(s.b, width))

    def write(self, rep: Representation) -> None:
        s = self.environment.state
        digits = rep["digits"].detach()
        if digits.shape != (*s.values.shape, N_DIGITS):
            raise ShapeError(
                f"digits must be (batch, L, {N_DIGITS}) = {(*s.values.shape, N_DIGITS)}, got {tuple(digits.shape)}"
            )
        inside = torch.arange(s.values.shape[1]) < s.lengths[:, None]
        values = torch.where(inside & (digits.sum(-1) >= 0.5), digits.argmax(-1), -1)
        a = _decode_pointer(rep["a"].detach(), s.lengths)
        b = _decode_pointer(rep["b"].detach(), s.lengths)
        self.environment.set_state(SortingState(values, s.lengths, a, b))


def _encode_pointer(position: Tensor, width: int) -> Tensor:
    """``(..., width)`` one-hot of ``(...)`` positions; all zeros where the position is ``-1``."""
    return torch.nn.functional.one_hot(position.clamp_min(0), width).float() * (position >= 0)[..., None]


def _decode_pointer(p: Tensor, lengths: Tensor) -> Tensor:
    high = p > 0.5
    position = p.argmax(-1)
    return torch.where((high.sum(-1) == 1) & (position < lengths), position, -1)


def sorting_traces(
    batch_size: int, max_length: int, generator: torch.Generator | None = None, *, min_length: int = 2
) -> Trace:
    """Selection-sort traces of fresh random lists, every R(t) recorded (training data for both regimes).

    Args:
        batch_size: lists per batch.
        max_length: longest list (lengths are uniform in ``[min_length, max_length]``).
        generator: random source.
        min_length: shortest list.

    Returns:
        a trace with ``representations`` fields ``(batch, T + 1, ...)``, ``actions`` ``(batch, T)``.
    """
    lists = sample_lists(batch_size, min_length=min_length, max_length=max_length, generator=generator)
    return expert_trace(lists.values, lists.lengths)


def expert_trace(values: Tensor, lengths: Tensor | None = None) -> Trace:
    """Selection-sort traces of given lists, every R(t) recorded.

    The traces are those of :func:`selection_sort_trace`, executed with the environment's dynamics; they
    equal running :func:`selection_sort_policy` in a :class:`SortingEnvironment` (the tests check this),
    without a tensor operation per step.

    Args:
        values: ``(batch, L)`` long digits, ``-1`` after each list's end.
        lengths: ``(batch,)`` list lengths (default: digits per row).

    Returns:
        a trace with ``representations`` fields ``(batch, T + 1, ...)`` and ``actions`` ``(batch, T)``, ``T``
        the longest trace; after its ``eop`` an example's actions are ``-1`` and its R(t) is repeated.
    """
    env = SortingEnvironment()
    state = env.reset(values, lengths)  # validates
    rows = state.values.tolist()
    lens = state.lengths.tolist()
    runs = [_execute(row[:n]) for row, n in zip(rows, lens, strict=True)]
    steps = max(len(ops) for ops, _ in runs)
    width = state.values.shape[1]
    actions = np.full((len(runs), steps), -1, dtype=np.int64)
    tape = np.full((len(runs), steps + 1, width + 2), -1, dtype=np.int64)  # digits, then A and B
    for i, (ops, states) in enumerate(runs):
        n, t = lens[i], len(ops)
        actions[i, :t] = ops
        frames = np.asarray(states)  # (t + 1, n + 2)
        tape[i, : t + 1, :n] = frames[:, :n]
        tape[i, : t + 1, width:] = frames[:, n:]
        tape[i, t + 1 :] = tape[i, t]
    actions = torch.from_numpy(actions)
    tape = torch.from_numpy(tape)
    values_t, a, b = tape[..., :width], tape[..., width], tape[..., width + 1]
    digits = torch.nn.functional.one_hot(values_t.clamp_min(0), N_DIGITS).float() * (values_t >= 0)[..., None]
    reps = Representation(digits=digits, a=_encode_pointer(a, width), b=_encode_pointer(b, width))
    return Trace(
        actions=actions,
        steps=(actions >= 0).sum(1),
        stopped=torch.ones(len(runs), dtype=torch.bool),
        final=reps.map(lambda x: x[:, -1]),
        representations=reps,
    )


def _execute(xs: list[int]) -> tuple[list[int], list[list[int]]]:
    """Selection sort on one list: action indices and every state ``[*digits, a, b]``, the start included."""
    xs = list(xs)
    a, b = 0, 1
    ops = [OPERATIONS.index(op) for op in selection_sort_trace(xs)]
    states = [[*xs, a, b]]
    for op in ops:
        if op == MOVA:
            a += 1
        elif op == MOVB:
            b += 1
        elif op == RETB:
            b = a + 1
        elif op == SWAP:
            xs[a], xs[b] = xs[b], xs[a]
        states.append([*xs, a, b])
    return ops, states


def augment_sorting(
    rep: Representation, level: float = 0.4, generator: torch.Generator | None = None
) -> Representation:
    """Input noise of thesis eq. 3.1 and 3.2 on a sorting representation.

    Pointers get eq. 3.1, ``|x - U(0, level)|``. Digit vectors are taken over the extended vocabulary of
    ten digits and the null class (a null position is the one-hot null class), get eq. 3.1 and then eq.
    3.2, ``softmax(100 x)``, which puts them back on the softmax manifold; the null column is then dropped,
    so a noisy null position is again a (near) zero vector, as the swap operator's outputs are.

    Args:
        rep: fields ``digits`` ``(..., L, 10)``, ``a`` and ``b`` ``(..., L)``.
        level: the upper end of the uniform noise (0.4 in the thesis).
        generator: random source.
    """
    digits = rep["digits"]
    null = (1 - digits.sum(-1, keepdim=True)).clamp(0, 1)
    extended = torch.cat([digits, null], dim=-1)  # (..., L, 11)
    noisy = torch.softmax(uniform_noise(extended, level, generator) * 100.0, dim=-1)[..., :N_DIGITS]
    pointer = Pointer()
    return rep.replace(
        digits=noisy,
        a=pointer.augment(rep["a"], level, generator=generator),
        b=pointer.augment(rep["b"], level, generator=generator),
    )


def sorting_episodes(batch_size: int, max_size: int, generator: torch.Generator) -> Interface:
    """Fresh random lists of lengths 2 to ``max_size`` in a reset environment, behind its interface (the
    :class:`~modnets.train.EpisodeSource` of training by reward)."""
    lists = sample_lists(batch_size, max_length=max_size, generator=generator)
    env = SortingEnvironment()
    env.reset(lists.values, lists.lengths)
    return SortingInterface(env)


def sorting_potential(state: SortingState) -> torch.Tensor:
    """The shaping potential of a sorting state: minus its inversions, as a share of the most a list of its
    length can have, ``L (L - 1) / 2``; ``(batch,)``.

    An inversion is a pair of positions ``i < j`` of the list with digit ``i`` > digit ``j``. A digit the
    operators lost (a position that decodes to no digit) counts ``L`` inversions, more than it can take part
    in, so that losing a digit never pays. Selection sort only swaps inverted pairs, so along its trace the
    potential never falls: each swap earns (under shaping weight 1) the share of the inversions it removes,
    and a sorted list has potential 0.

    Example:
        >>> state = SortingState(torch.tensor([[3, 1, 2], [1, 2, 3], [1, -1, 2]]), torch.tensor([3, 3, 3]),
        ...                      torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long))
        >>> sorting_potential(state)  # 2 inversions of 3; none; one lost digit
        tensor([-0.6667, -0.0000, -1.0000])
    """
    values, lengths = state.values, state.lengths
    width = values.shape[1]
    pos = torch.arange(width, device=values.device)
    inside = pos < lengths[:, None]  # (B, L)
    digit = inside & (values >= 0)
    pairs = digit[:, :, None] & digit[:, None, :] & (pos[:, None] < pos[None, :])  # (B, L, L): i < j
    inversions = ((values[:, :, None] > values[:, None, :]) & pairs).sum((1, 2))
    lost = (inside & (values < 0)).sum(1)
    most = (lengths * (lengths - 1) / 2).clamp_min(1)
    return -(inversions + lengths * lost).float() / most
