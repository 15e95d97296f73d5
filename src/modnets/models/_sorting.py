"""The list-sorting agent of thesis 3.2: LSTM operators, digestor and controller, and hand-written references.

Neural and hand-written functionals of the same operator share one signature, so either can be put into
an operator (or an agent) without changing anything else: the agent is a hybrid system by construction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..agents import Agent, ControlModule, Decision, ModuleOperator, Operator, Policy, Representation
from ..data._sorting import EOP, MOVA, MOVB, N_DIGITS, OPERATIONS, RETB, SWAP, sorting_step_bound
from ..errors import ConfigError
from ..modules import Signature, TypedModule
from ..types import Bounded, OneHot, Pointer

__all__ = [
    "ControllerPolicy",
    "PointerShift",
    "ReferenceDigestor",
    "ReferencePolicy",
    "ShiftReference",
    "SortingDigestor",
    "SwapNet",
    "SwapReference",
    "sorting_agent",
    "sorting_control",
    "sorting_operators",
]

#: The swap functional's output vocabulary: the ten digits and the null class (no digit, thesis 3.2.2).
SWAP_CLASSES = N_DIGITS + 1

POINTER_SIGNATURE = Signature(inputs={"pointer": Pointer()}, output=Pointer())
SWAP_SIGNATURE = Signature(
    inputs={"digits": Bounded(size=N_DIGITS), "a": Pointer(), "b": Pointer()}, output=OneHot(SWAP_CLASSES)
)


def _check_hidden(hidden: int) -> None:
    if not isinstance(hidden, int) or hidden < 1:
        raise ConfigError(f"hidden must be a positive int, got {hidden!r}")


class PointerShift(TypedModule):
    """Neural pointer functional (thesis Fig. 3.3): an LSTM along the sequence, a linear layer, a sigmoid.

    Moving a pointer one position to the right means delaying its sequence by one step, which the LSTM
    learns. The sigmoid does not force the output to be one-hot.

    Args:
        hidden: LSTM units (100 in the thesis).

    Example:
        >>> PointerShift(hidden=8)(torch.tensor([[1.0, 0.0, 0.0]])).shape  # (batch, L)
        torch.Size([1, 3])
    """

    def __init__(self, hidden: int = 100) -> None:
        _check_hidden(hidden)
        super().__init__(POINTER_SIGNATURE)
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def compute(self, pointer: Tensor, *, arg: Tensor | None = None) -> Tensor:
        """``pointer``: ``(batch, L)`` -> ``(batch, L)`` logits."""
        h, _ = self.lstm(pointer.unsqueeze(-1))  # (B, L, H)
        return self.out(h).squeeze(-1)


class SwapNet(TypedModule):
    """Neural swap functional (thesis Fig. 3.4): a bidirectional LSTM over digits and both pointers.

    One linear layer, shared by both directions, maps each direction's output to the ten digits and the
    null class; the two are added and go through a softmax. (The forward direction can write the digit
    under B at A's position, the backward one the digit under A at B's, thesis Listing 3.1.)

    Args:
        hidden: LSTM units per direction (100 in the thesis).

    Example:
        >>> net = SwapNet(hidden=8)
        >>> net(torch.zeros(2, 4, 10), torch.zeros(2, 4), torch.zeros(2, 4)).shape  # (batch, L, 11)
        torch.Size([2, 4, 11])
    """

    def __init__(self, hidden: int = 100) -> None:
        _check_hidden(hidden)
        super().__init__(SWAP_SIGNATURE)
        self.hidden = hidden
        self.lstm = nn.LSTM(N_DIGITS + 2, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(hidden, SWAP_CLASSES)

    def compute(self, digits: Tensor, a: Tensor, b: Tensor, *, arg: Tensor | None = None) -> Tensor:
        """``digits`` ``(batch, L, 10)``, ``a``, ``b`` ``(batch, L)`` -> ``(batch, L, 11)`` logits."""
        x = torch.cat([digits, a.unsqueeze(-1), b.unsqueeze(-1)], dim=-1)  # (B, L, 12)
        h, _ = self.lstm(x)  # (B, L, 2H)
        return self.out(h[..., : self.hidden]) + self.out(h[..., self.hidden :])


class ShiftReference(TypedModule):
    """Hand-written pointer functional: the sequence delayed by one position (same signature as
    :class:`PointerShift`).

    Example:
        >>> ShiftReference()(torch.tensor([[0.0, 1.0, 0.0]]))
        tensor([[0., 0., 1.]])
    """

    constrains_output = False

    def __init__(self) -> None:
        super().__init__(POINTER_SIGNATURE)

    def compute(self, pointer: Tensor, *, arg: Tensor | None = None) -> Tensor:
        return torch.cat([torch.zeros_like(pointer[:, :1]), pointer[:, :-1]], dim=1)


class SwapReference(TypedModule):
    """Hand-written swap functional: exchanges the digit vectors under A and B (same signature as
    :class:`SwapNet`, the null class holding whatever mass the digits lack).

    Example:
        >>> digits = torch.eye(10)[[3, 9, 5]][None]  # the list 3, 9, 5
        >>> a, b = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])
        >>> SwapReference()(digits, a, b).argmax(-1)
        tensor([[5, 9, 3]])
    """

    constrains_output = False

    def __init__(self) -> None:
        super().__init__(SWAP_SIGNATURE)

    def compute(self, digits: Tensor, a: Tensor, b: Tensor, *, arg: Tensor | None = None) -> Tensor:
        va = (a.unsqueeze(-1) * digits).sum(1, keepdim=True)  # (B, 1, 10) digit under A
        vb = (b.unsqueeze(-1) * digits).sum(1, keepdim=True)
        out = digits + a.unsqueeze(-1) * (vb - va) + b.unsqueeze(-1) * (va - vb)
        null = (1 - out.sum(-1, keepdim=True)).clamp(0, 1)
        return torch.cat([out, null], dim=-1)


def _stack_fields(rep: Representation) -> Tensor:
    """``(batch, L, 12)``: digits, A and B side by side at each position."""
    return torch.cat([rep["digits"], rep["a"].unsqueeze(-1), rep["b"].unsqueeze(-1)], dim=-1)


class SortingDigestor(nn.Module):
    """The digestor of thesis Fig. 3.5: an LSTM reads R(t) position by position; its last output is e(t).

    Args:
        hidden: LSTM units = embedding size.

    Example:
        >>> rep = Representation(digits=torch.zeros(2, 5, 10), a=torch.zeros(2, 5), b=torch.zeros(2, 5))
        >>> SortingDigestor(hidden=8)(rep).shape  # (batch, hidden)
        torch.Size([2, 8])
    """

    def __init__(self, hidden: int = 100) -> None:
        _check_hidden(hidden)
        super().__init__()
        self.lstm = nn.LSTM(N_DIGITS + 2, hidden, batch_first=True)

    def forward(self, rep: Representation) -> Tensor:
        _, (h, _) = self.lstm(_stack_fields(rep))
        return h[-1]


class ControllerPolicy(Policy):
    """The controller of thesis Fig. 3.5: an LSTM over time fed e(t) and the previous action, then a
    linear layer to the selection logits.

    Args:
        d_embed: embedding size (the digestor's).
        n_actions: actions, the stop action included.
        hidden: LSTM units.
    """

    def __init__(self, d_embed: int, n_actions: int, hidden: int = 100) -> None:
        _check_hidden(hidden)
        super().__init__(n_actions)
        self.hidden = hidden
        self.lstm = nn.LSTM(d_embed + n_actions, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_actions)

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """``(h, c)``, each ``(batch, hidden)``."""
        zeros = torch.zeros(batch_size, self.hidden, device=device)
        return zeros, zeros.clone()

    def forward(self, embedding: Tensor, previous: Tensor, state: tuple[Tensor, Tensor]) -> Decision:
        x = torch.cat([embedding, self.one_hot_previous(previous)], dim=-1).unsqueeze(1)  # (B, 1, E + A)
        h, (h_n, c_n) = self.lstm(x, (state[0].unsqueeze(0), state[1].unsqueeze(0)))
        return Decision(self.out(h.squeeze(1)), (h_n.squeeze(0), c_n.squeeze(0)))

    def sequence(self, embeddings: Tensor, previous: Tensor) -> Tensor:
        """``(batch, steps, d_embed)``, ``(batch, steps)`` -> ``(batch, steps, n_actions)`` in one LSTM call."""
        h, _ = self.lstm(torch.cat([embeddings, self.one_hot_previous(previous)], dim=-1))
        return self.out(h)


class ReferenceDigestor(nn.Module):
    """Hand-written digestor: decodes R(t) into three features, ``(batch, 3)``: whether the digit under B
    is smaller than the one under A, whether A is on the list's last digit, whether B is."""

    def forward(self, rep: Representation) -> Tensor:
        digits = rep["digits"]
        last = (digits.sum(-1) >= 0.5).sum(1) - 1  # (B,) position of the last digit
        pa, pb = rep["a"].argmax(-1), rep["b"].argmax(-1)
        value = digits.argmax(-1)  # (B, L)
        va = value.gather(1, pa[:, None]).squeeze(1)
        vb = value.gather(1, pb[:, None]).squeeze(1)
        return torch.stack([vb < va, pa == last, pb == last], dim=1).float()


class ReferencePolicy(Policy):
    """Hand-written selection-sort controller over :class:`ReferenceDigestor` features (memory: the
    previous action, needed right after ``mova``)."""

    def __init__(self) -> None:
        super().__init__(len(OPERATIONS))

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> None:
        return None

    def forward(self, embedding: Tensor, previous: Tensor, state: Any) -> Decision:
        smaller, a_last, b_last = embedding.bool().unbind(-1)
        act = torch.where(b_last, MOVA, MOVB)
        act = torch.where(smaller, SWAP, act)
        act = torch.where(previous == MOVA, RETB, act)
        act = torch.where(a_last & b_last, EOP, act)
        logits = nn.functional.one_hot(act, self.n_actions).float() * 20.0 - 10.0
        return Decision(logits, None)


def sorting_operators(*, reference: bool = False, hidden: int = 100) -> list[Operator]:
    """The four operators of the sorting agent (``eop`` is the agent's stop action), in action order.

    ``mova``, ``movb`` and ``retb`` share one functional architecture (each its own weights) and differ in
    their selective input and update: ``mova`` reads and writes A, ``movb`` B, ``retb`` reads A and writes
    B. ``swap`` reads digits and both pointers and writes the digits, dropping its null class.

    Args:
        reference: hand-written functionals instead of neural ones.
        hidden: LSTM units of the neural functionals.
    """

    def shift() -> TypedModule:
        return ShiftReference() if reference else PointerShift(hidden)

    return [
        ModuleOperator("mova", functional=shift(), reads=("a",), writes="a"),
        ModuleOperator("movb", functional=shift(), reads=("b",), writes="b"),
        ModuleOperator("retb", functional=shift(), reads=("a",), writes="b"),
        ModuleOperator(
            "swap",
            functional=SwapReference() if reference else SwapNet(hidden),
            reads=("digits", "a", "b"),
            writes="digits",
            keep=N_DIGITS,
        ),
    ]


def sorting_control(*, reference: bool = False, hidden: int = 100) -> ControlModule:
    """The control module: LSTM digestor + LSTM controller, or the hand-written selection-sort rule."""
    if reference:
        return ControlModule(digestor=ReferenceDigestor(), policy=ReferencePolicy())
    return ControlModule(
        digestor=SortingDigestor(hidden), policy=ControllerPolicy(hidden, len(OPERATIONS), hidden=hidden)
    )


def sorting_agent(
    *, operators: list[Operator] | None = None, control: ControlModule | None = None, hidden: int = 100
) -> Agent:
    """The list-sorting agent of thesis 3.2 (neural by default); any part can be replaced.

    The step bound is :func:`~modnets.data.sorting_step_bound` (the longest selection-sort trace on the
    tape, plus one step per position).

    Args:
        operators: the four operators (default: ``sorting_operators(hidden=hidden)``).
        control: the control module (default: ``sorting_control(hidden=hidden)``).
        hidden: LSTM units of the default neural parts.

    Example:
        >>> from modnets.data import SortingEnvironment, SortingInterface
        >>> env = SortingEnvironment()
        >>> _ = env.reset(torch.tensor([[3, 9, 5, 4, 1]]))
        >>> agent = sorting_agent(operators=sorting_operators(reference=True),
        ...                       control=sorting_control(reference=True))
        >>> trace = agent.solve(SortingInterface(env))
        >>> env.state.values.tolist(), bool(env.is_target()), bool(trace.stopped)
        ([[1, 3, 4, 5, 9]], True, True)
    """
    return Agent(
        control=control if control is not None else sorting_control(hidden=hidden),
        operators=operators if operators is not None else sorting_operators(hidden=hidden),
        stop=OPERATIONS[EOP],
        max_steps=sorting_step_bound,
    )
