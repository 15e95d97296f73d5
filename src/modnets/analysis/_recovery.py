"""How well learned routing recovers a known modular structure: adjusted mutual information and purity
between the true component of each example (e.g. the primitive applied at a step) and the module chosen."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ShapeError

__all__ = ["Recovery", "recovery_scores"]


@dataclass(frozen=True)
class Recovery:
    """Agreement of chosen modules with the truth, per routed layer.

    Attributes:
        ami: ``(L,)`` adjusted mutual information (0: chance, 1: a one-to-one match).
        purity: ``(L,)`` share of examples whose module's most frequent true component is their own (1 when
            every module serves one component; also 1 for an over-split routing, so read it with ``ami``).
        coverage: ``(L,)`` share of examples whose true component's most used module is their own (1 when
            every component goes to one module; also 1 when all share one module).
    """

    ami: tuple[float, ...]
    purity: tuple[float, ...]
    coverage: tuple[float, ...]

    @property
    def mean_ami(self) -> float:
        """AMI averaged over layers."""
        return sum(self.ami) / len(self.ami)


def _majority_share(a: Tensor, b: Tensor) -> float:
    """Share of examples whose ``b`` is the most frequent ``b`` within their ``a`` group."""
    table = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.long)
    table.index_put_((a, b), torch.ones_like(a), accumulate=True)
    return float(table.max(1).values.sum()) / a.shape[0]


def recovery_scores(truth: Tensor, choice: Tensor) -> Recovery:
    """Compare chosen modules with the true components, layer by layer.

    Args:
        truth: (N, L) long, the true component of each example at each layer.
        choice: (N, L) long, the module chosen (or (N, L, 1) as in a route's ``choice`` for k = 1).

    Returns:
        per-layer AMI, purity and coverage.

    Raises:
        ShapeError: mismatched shapes or k > 1 choices.

    Example:
        >>> truth = torch.tensor([[0], [0], [1], [1]])
        >>> r = recovery_scores(truth, torch.tensor([[3], [3], [2], [2]]))  # renamed, but the same partition
        >>> r.ami, r.purity
        ((1.0,), (1.0,))
    """
    from sklearn.metrics import adjusted_mutual_info_score

    if choice.dim() == 3:
        if choice.shape[2] != 1:
            raise ShapeError(f"recovery compares one module per layer (k = 1), got choice {tuple(choice.shape)}")
        choice = choice[:, :, 0]
    if truth.dim() != 2 or truth.shape != choice.shape or truth.shape[0] == 0:
        raise ShapeError(f"truth and choice must both be (N, L) with N > 0, got {tuple(truth.shape)} and "
                         f"{tuple(choice.shape)}")
    truth, choice = truth.long().cpu(), choice.long().cpu()
    layers = range(truth.shape[1])
    return Recovery(
        ami=tuple(float(adjusted_mutual_info_score(truth[:, i].numpy(), choice[:, i].numpy())) for i in layers),
        purity=tuple(_majority_share(choice[:, i], truth[:, i]) for i in layers),
        coverage=tuple(_majority_share(truth[:, i], choice[:, i]) for i in layers),
    )
