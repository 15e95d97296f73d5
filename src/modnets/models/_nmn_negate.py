"""``not(answer)``: the negation of a yes / no answer, as an NMN module on the answer interface."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError
from ..modules import Signature, TypedModule
from ..types import DataType, Logits, Probs

__all__ = ["Negate"]


class Negate(TypedModule):
    """``not(a)``: swap the scores of the answers "yes" and "no", leave every other answer as it is.

    "Is there not a red shape?" is ``not(exist(find[red]))``. A negated attention map would not do:
    ``exist(not(find[red]))`` asks whether anything but red is in the image, and the background always
    is. Negation lives on the answer instead, where it is exact and needs no parameters; a permutation
    keeps :class:`~modnets.types.Probs` a distribution and :class:`~modnets.types.Logits` logits.

    Args:
        answer: the answer type (``Probs(n)`` or ``Logits(n)``); input and output.
        swap: the indices of the two answers to exchange (``no``, ``yes``).

    Shapes:
        ``a: (batch, n_answers)`` -> ``(batch, n_answers)``.
    """

    def __init__(self, *, answer: DataType, swap: tuple[int, int]) -> None:
        super().__init__(Signature(inputs={"answer": answer}, output=answer))
        if not isinstance(answer, Probs | Logits):
            raise ConfigError(f"Negate needs a Probs or Logits answer type, got {answer}")
        n = answer.size
        if n is None:
            raise ConfigError(f"Negate needs an answer type with a size, got {answer}")
        if (
            len(swap) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i in swap)
            or swap[0] == swap[1]
        ):
            raise ConfigError(f"Negate swap must be two distinct answer indices in 0..{n - 1}, got {swap!r}")
        perm = torch.arange(n)
        perm[swap[0]], perm[swap[1]] = swap[1], swap[0]
        self.register_buffer("perm", perm, persistent=False)
        self.swap = (int(swap[0]), int(swap[1]))

    # A permutation keeps the values in the answer's domain; a second softmax would flatten them.
    constrains_output = False

    def hub_config(self) -> dict:
        """The constructor's keyword arguments (what :mod:`modnets.hub` stores to rebuild the module)."""
        return {"answer": self.signature.output, "swap": list(self.swap)}

    def compute(self, answer: Tensor, *, arg: Tensor | None = None) -> Tensor:
        return answer.index_select(1, self.perm)
