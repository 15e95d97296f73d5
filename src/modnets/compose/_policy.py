"""ProgramPolicy: a policy p(a | x) over whole programs (layouts) of a library, decoded under its types.

The policy is a GRU decoder that writes a program's calls in prefix order (root first, then each input's
sub-program, left to right), from a context vector ``x`` of each example (a question's encoding, a task
embedding, input features: the caller computes it). At every step only the calls that can fill the open
slot are allowed (the slot's type accepts the call's output, the call's argument is in its vocabulary)
and only those that leave the program finishable within the space's size and depth bounds (near a bound,
only leaves and closing calls remain): the logits of every other call are masked out, so every program
the policy samples, picks greedily or finds by beam search is a member of its
:class:`~modnets.compose.ProgramSpace`, and type-checks by construction.

Conventions (mirroring :class:`~modnets.routing.RouteResult`):

- rows: ``N = S * B`` programs for ``samples=S``, sample-major (row ``s * B + n`` is example ``n``'s sample
  ``s``, as :func:`~modnets.train.RoutingObjective` copies batches); beam search gives ``width * B`` rows,
  beam-major, best beam first;
- ``tokens``: (N, T) long token ids in prefix order, ``-1`` after a program ends;
- ``log_prob``: (N,) ``log p(program | x)``, the sum of ``step_log_prob`` over the steps;
- ``step_log_prob``: (N, T) the log-probability of each step's call under the masked distribution;
- ``entropy``: (N, T) the entropy of each step's masked distribution (0 after the end); their sum along a
  sampled program is an unbiased estimate of H(A | X = x) over whole programs (the chain rule).

Each step's input is the embedding of the previous call plus that of the slot being filled (which call it
feeds and as which input), concatenated with the context; the GRU's first state is ``tanh(W x)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, NumericalError, ShapeError
from ._program import Program
from ._space import ProgramSpace

__all__ = ["POLICY_MODES", "ProgramPolicy", "ProgramSample"]

#: How :meth:`ProgramPolicy.forward` picks each call.
POLICY_MODES = ("sample", "greedy")


class ProgramSample(NamedTuple):
    """Programs drawn, picked or scored by a :class:`ProgramPolicy`, one per row.

    Attributes:
        programs: N programs.
        tokens: (N, T) long token ids in prefix order, ``-1`` after each program's end.
        log_prob: (N,) log p(program | x): the sum of ``step_log_prob``.
        step_log_prob: (N, T) log-probability of each step's call (0 after the end).
        entropy: (N, T) entropy of each step's masked distribution over calls (0 after the end).
    """

    programs: tuple[Program, ...]
    tokens: Tensor
    log_prob: Tensor
    step_log_prob: Tensor
    entropy: Tensor

    def sequence_entropy(self) -> Tensor:
        """(N,) the per-step entropies summed along each program: for sampled programs, an unbiased
        estimate of the entropy H(A | X = x) of the policy's distribution over whole programs."""
        return self.entropy.sum(1)


class _State:
    """The decoders' per-row state: the GRU state, the stack of open slots, the calls made."""

    def __init__(self, h: Tensor, stack: int, root_reserve: int) -> None:
        n, device = h.shape[0], h.device
        self.h = h  # (N, H)
        self.types = torch.zeros(n, stack, dtype=torch.long, device=device)  # slot type ids
        self.depths = torch.ones(n, stack, dtype=torch.long, device=device)  # depth of the call filling it
        self.slots = torch.zeros(n, stack, dtype=torch.long, device=device)  # which input of which call
        self.sp = torch.ones(n, dtype=torch.long, device=device)  # open slots
        self.size = torch.zeros(n, dtype=torch.long, device=device)  # calls made
        self.reserve = torch.full((n,), root_reserve, dtype=torch.long, device=device)  # least calls to finish
        self.prev = torch.zeros(n, dtype=torch.long, device=device)  # previous call (set to the start token)
        self.tokens: list[Tensor] = []
        self.step_lp: list[Tensor] = []
        self.entropy: list[Tensor] = []

    def select(self, rows: Tensor) -> None:
        for name in ("h", "types", "depths", "slots", "sp", "size", "reserve", "prev"):
            setattr(self, name, getattr(self, name).index_select(0, rows))
        for name in ("tokens", "step_lp", "entropy"):
            setattr(self, name, [t.index_select(0, rows) for t in getattr(self, name)])


class ProgramPolicy(nn.Module):
    """A policy over the programs of a :class:`~modnets.compose.ProgramSpace`, decoded under its types.

    See the module docstring for the decoding and the result's conventions.

    Args:
        space: the programs the policy may produce (a library's calls, the root type, size and depth bounds).
        d_context: width of the context vectors.
        hidden: GRU width.
        embed: width of the call and slot embeddings.
        sample_in_eval: whether a call without ``mode`` keeps sampling in eval mode; by default the policy
            picks greedily there (as a :class:`~modnets.routing.Router` routes deterministically in eval).

    Raises:
        ConfigError: a bad argument (the message names it and its value).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> from modnets.models import nmn_library
        >>> from modnets.types import Probs
        >>> lib = nmn_library(grid=(4, 4))
        >>> space = ProgramSpace.of(lib, output=Probs(26), max_size=5, max_depth=4)
        >>> policy = ProgramPolicy(space=space, d_context=8)
        >>> drawn = policy(torch.randn(3, 8), samples=2)  # 2 programs for each of 3 examples, sample-major
        >>> len(drawn.programs), drawn.log_prob.shape, all(space.contains(p) for p in drawn.programs)
        (6, torch.Size([6]), True)
        >>> scored = policy.log_prob(drawn.programs, torch.randn(3, 8).repeat(2, 1))  # teacher forcing
        >>> scored.shape
        torch.Size([6])
    """

    def __init__(
        self, *, space: ProgramSpace, d_context: int, hidden: int = 64, embed: int = 32, sample_in_eval: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(space, ProgramSpace):
            raise ConfigError(f"ProgramPolicy space must be a ProgramSpace, got {type(space).__name__}")
        for name, value in (("d_context", d_context), ("hidden", hidden), ("embed", embed)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ProgramPolicy {name} must be an int >= 1, got {value!r}")
        if not isinstance(sample_in_eval, bool):
            raise ConfigError(f"ProgramPolicy sample_in_eval must be a bool, got {sample_in_eval!r}")
        self.space, self.d_context, self.hidden, self.sample_in_eval = space, d_context, hidden, sample_in_eval
        v, arity = len(space), max(space.max_arity, 1)
        self.init = nn.Linear(d_context, hidden)
        self.call_embedding = nn.Embedding(v + 1, embed)  # index v: the start token
        self.slot_embedding = nn.Embedding(1 + v * arity, embed)  # 0: the root; 1 + t * arity + j: input j of t
        self.cell = nn.GRUCell(embed + d_context, hidden)
        self.out = nn.Linear(hidden, v)
        for name, table in space.tables().items():
            self.register_buffer(name, table, persistent=False)
        self._decoded: dict[tuple[int, ...], Program] = {}

    # ------------------------------------------------------------------ the public calls
    def forward(
        self,
        context: Tensor,
        *,
        samples: int = 1,
        mode: str | None = None,
        programs: Sequence[Program] | None = None,
        generator: torch.Generator | None = None,
    ) -> ProgramSample:
        """Draw (or pick, or score) one program per row.

        Args:
            context: (B, d_context) one context vector per example.
            samples: S, programs per example; the rows are sample-major, N = S * B.
            mode: ``"sample"`` (from the masked distribution) or ``"greedy"`` (the most probable call at each
                step); ``None``: ``"sample"`` in training mode, ``"greedy"`` in eval mode (unless the policy was
                built with ``sample_in_eval``).
            programs: N given programs to score instead (teacher forcing); ``samples`` and ``mode`` are then
                ignored and ``context`` must have one row per program.
            generator: random source of ``"sample"``.

        Returns:
            :class:`ProgramSample` with N rows.

        Raises:
            ShapeError: a context of the wrong shape, or a number of programs that differs from its rows.
            ConfigError: an unknown mode or a bad ``samples``.
            TypeMismatchError, UnknownNameError: a given program outside the policy's space.
        """
        context = self._check_context(context)
        if programs is not None:
            if isinstance(programs, Program) or len(programs) != context.shape[0]:
                got = "a single Program" if isinstance(programs, Program) else f"{len(programs)} programs"
                raise ShapeError(f"scoring needs one program per context row ({context.shape[0]}), got {got}")
            return self._decode(context, forced=self.encode(programs))
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
            raise ConfigError(f"samples must be an int >= 1, got {samples!r}")
        if mode is not None and mode not in POLICY_MODES:
            raise ConfigError(f"mode must be None or one of {POLICY_MODES}, got {mode!r}")
        mode = mode or ("sample" if self.training or self.sample_in_eval else "greedy")
        if samples > 1:
            context = context.repeat(samples, 1)
        return self._decode(context, greedy=mode == "greedy", generator=generator)

    def log_prob(self, programs: Sequence[Program], context: Tensor) -> Tensor:
        """(N,) log p(program | x) of given programs, by teacher forcing (``context``: (N, d_context), one
        row per program); differentiable in the policy's parameters."""
        return self(context, programs=programs).log_prob

    @torch.no_grad()
    def beam_search(self, context: Tensor, *, width: int = 4) -> ProgramSample:
        """The ``width`` most probable programs of each example found by beam search (no gradient).

        Args:
            context: (B, d_context).
            width: beams per example.

        Returns:
            :class:`ProgramSample` with ``width * B`` rows, beam-major (row ``w * B + n``), each example's best
            program in beam 0. When the space holds fewer than ``width`` programs, the extra beams repeat the
            best one with ``log_prob = -inf``.
        """
        context = self._check_context(context)
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ConfigError(f"width must be an int >= 1, got {width!r}")
        b, v = context.shape[0], len(self.space)
        ctx = context.repeat(width, 1)
        state = self._start(ctx)
        score = torch.full((width, b), float("-inf"), device=ctx.device)
        score[0] = 0.0  # one live beam per example at the start
        score = score.flatten()
        arange = torch.arange(b, device=ctx.device)
        for _ in range(self.space.max_size):
            done = state.sp == 0
            if bool(done.all()):
                break
            logp, allowed, entropy = self._step(state, ctx)
            # column v continues a finished beam at no cost; a live beam cannot take it
            stay = torch.where(done, 0.0, float("-inf"))[:, None]
            logp = torch.cat([logp.masked_fill(done[:, None], float("-inf")), stay], 1)  # (W * B, V + 1)
            total = (score[:, None] + logp).view(width, b, v + 1).permute(1, 0, 2).reshape(b, width * (v + 1))
            best, index = total.topk(width, dim=1)  # (B, W)
            origin = (index // (v + 1)).t().reshape(-1) * b + arange.repeat(width)  # row of each new beam
            call = (index % (v + 1)).t().reshape(-1)
            state.select(origin)
            logp, entropy = logp.index_select(0, origin), entropy.index_select(0, origin)
            score = best.t().reshape(-1)
            dead = ~torch.isfinite(score)
            finished = (call == v) | dead
            self._advance(state, torch.where(finished, 0, call), state.sp == 0, logp.gather(1, call[:, None])[:, 0],
                          entropy, stop=finished)
        dead = ~torch.isfinite(score)
        if bool(dead.any()):  # fewer programs than beams: repeat the best (whose program is complete)
            state.select(torch.where(dead, arange.repeat(width), torch.arange(width * b, device=ctx.device)))
        sample = self._finish(state)
        return sample._replace(log_prob=sample.log_prob.masked_fill(dead, float("-inf")))

    def encode(self, programs: Sequence[Program]) -> Tensor:
        """(N, max_size) long token ids of programs in prefix order, ``-1`` padded.

        Raises:
            TypeMismatchError, UnknownNameError: a program outside the policy's space.
        """
        rows = [self.space.encode(p) for p in programs]
        out = torch.full((len(rows), self.space.max_size), -1, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out.to(self.out.weight.device)

    def decode(self, tokens: Tensor) -> tuple[Program, ...]:
        """The programs of (N, T) token rows (``-1`` padded); decoded rows are cached."""
        out = []
        for row in tokens.tolist():
            key = tuple(t for t in row if t >= 0)
            program = self._decoded.get(key)
            if program is None:
                if len(self._decoded) > 100_000:  # programs from a long run: keep memory bounded
                    self._decoded.clear()
                program = self._decoded[key] = self.space.decode(key)
            out.append(program)
        return tuple(out)

    # ------------------------------------------------------------------ decoding
    def _check_context(self, context: Tensor) -> Tensor:
        if not isinstance(context, Tensor) or context.dim() != 2 or context.shape[1] != self.d_context:
            shape = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ShapeError(f"context must have shape (batch, d_context={self.d_context}), got {shape}")
        if context.shape[0] == 0:
            raise ShapeError("context must hold at least one row, got 0")
        return context

    def _start(self, context: Tensor) -> _State:
        space = self.space
        state = _State(torch.tanh(self.init(context)), space.max_size + max(space.max_arity, 1),
                       int(space.min_size[0, space.max_depth]))
        state.prev.fill_(len(space))
        return state

    def _step(self, state: _State, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One GRU step: (N, V) masked log-probabilities, (N, V) allowed calls, (N,) entropies."""
        rows = torch.arange(state.h.shape[0], device=context.device)
        top = (state.sp - 1).clamp_min(0)
        slot_type, depth, slot = state.types[rows, top], state.depths[rows, top], state.slots[rows, top]
        height = (self.space.max_depth - depth + 1).clamp_min(0)  # levels left for this slot's sub-program
        x = torch.cat([self.call_embedding(state.prev) + self.slot_embedding(slot), context], 1)
        state.h = self.cell(x, state.h)
        logits = self.out(state.h)  # (N, V)
        own = self.min_size[slot_type, height]  # (N,)
        budget = self.space.max_size - state.size - (state.reserve - own)  # calls this sub-program may use
        allowed = self.accepts[slot_type] & (self.cost[height] <= budget[:, None])
        allowed = allowed | (state.sp == 0)[:, None]  # finished rows: any call (ignored), no empty softmax
        if not bool(torch.isfinite(logits).all()):
            raise NumericalError("the program policy's logits hold NaN or inf values", step=0, module="ProgramPolicy",
                                 quantity="policy logits")
        logp = F.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
        # p log p with the masked calls' log p set to 0 (not -inf), so that no NaN enters the gradient
        entropy = -(logp.exp() * logp.masked_fill(~allowed, 0.0)).sum(-1)
        return logp, allowed, entropy

    def _advance(self, state: _State, call: Tensor, done: Tensor, step_lp: Tensor, entropy: Tensor,
                 stop: Tensor | None = None) -> None:
        """Make call ``call`` (N,) in every row that is not ``done``; ``stop`` rows end without a call."""
        idle = done if stop is None else done | stop
        live = ~idle
        rows = torch.arange(call.shape[0], device=call.device)
        top = (state.sp - 1).clamp_min(0)
        slot_type, depth = state.types[rows, top], state.depths[rows, top]
        height = (self.space.max_depth - depth + 1).clamp_min(0)
        k = self.arity[call]
        kids = self.child_types[call]  # (N, A)
        below = (height - 1).clamp_min(0)
        reserve = state.reserve - self.min_size[slot_type, height]
        for j in range(kids.shape[1]):
            push = live & (j < k)
            if not bool(push.any()):
                continue
            r = rows[push]
            pos = (top + k - 1 - j)[push]  # input 0 ends on top of the stack: it is filled first
            state.types[r, pos] = kids[push, j]
            state.depths[r, pos] = depth[push] + 1
            state.slots[r, pos] = 1 + call[push] * kids.shape[1] + j
            reserve = reserve + torch.where(push, self.min_size[kids[:, j], below], 0)
        state.reserve = torch.where(live, reserve, state.reserve)
        state.sp = torch.where(live, state.sp - 1 + k, state.sp)
        if stop is not None:  # a beam that ended (or has no program left) makes no more calls
            state.sp = state.sp.masked_fill(stop, 0)
        state.size = state.size + live.long()
        state.prev = torch.where(live, call, state.prev)
        zero = torch.zeros((), dtype=step_lp.dtype, device=step_lp.device)
        state.tokens.append(torch.where(live, call, -1))
        state.step_lp.append(torch.where(live, step_lp, zero))
        state.entropy.append(torch.where(live, entropy, zero))

    def _decode(self, context: Tensor, *, forced: Tensor | None = None, greedy: bool = False,
                generator: torch.Generator | None = None) -> ProgramSample:
        state = self._start(context)
        for t in range(self.space.max_size):
            done = state.sp == 0
            if bool(done.all()):
                break
            logp, allowed, entropy = self._step(state, context)
            if forced is not None:
                call = forced[:, t]
                # members of the space stay inside the masks; anything else is a bug in the masks
                assert bool(((call >= 0) == ~done).all()), "a scored program ended before its slots were filled"
                call = call.clamp_min(0)
                assert bool(allowed.gather(1, call[:, None]).all()), "a scored program left the allowed calls"
            elif greedy:
                call = logp.argmax(-1)
            else:
                u = torch.rand(logp.shape, generator=generator, device=logp.device, dtype=logp.dtype)
                tiny = torch.finfo(logp.dtype).tiny
                gumbel = -torch.log((-torch.log(u.clamp_min(tiny))).clamp_min(tiny))
                call = (logp.detach() + gumbel).argmax(-1)  # Gumbel-max: an exact draw
            self._advance(state, call, done, logp.gather(1, call[:, None])[:, 0], entropy)
        return self._finish(state)

    def _finish(self, state: _State) -> ProgramSample:
        tokens = torch.stack(state.tokens, 1)
        step_lp = torch.stack(state.step_lp, 1)
        entropy = torch.stack(state.entropy, 1)
        return ProgramSample(self.decode(tokens), tokens, step_lp.sum(1), step_lp, entropy)

    def extra_repr(self) -> str:
        return f"{self.space!r}, d_context={self.d_context}, hidden={self.hidden}"
