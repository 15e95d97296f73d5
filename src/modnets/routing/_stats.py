"""Routing diagnostics (research note, "Information theory"): H(A), H(A|X), I(A;X), usage, collapse.

With a router that factorises over layers, p(a | x) = prod_l p(a_l | x), the conditional entropy is the
sum of the layers' entropies, estimated by its mean over a batch; the marginal p(a) is estimated by the
batch mean q(a) of p(a | x), and H(A) by the entropy of q. I(A;X) = H(A) - H(A|X). H(A) measures module
use (maximal when every routing is used equally often), H(A|X) the router's uncertainty (zero when it
is sure of one routing per input): the ideal is a high H(A) and a low H(A|X).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["RoutingStats", "entropy", "routing_stats"]

_JOINT_LIMIT = 1 << 16  # largest number of joint routings whose marginal is computed exactly


@dataclass(frozen=True)
class RoutingStats:
    """Monte-Carlo routing diagnostics of one batch (entropies in nats).

    Attributes:
        entropy: H(A), the entropy of the batch-marginal routing distribution q(a).
        conditional_entropy: H(A|X), the batch mean of the entropy of p(a | x).
        mutual_information: I(A;X) = H(A) - H(A|X).
        joint_exact: whether H(A) is the entropy of the joint marginal over all layers (exact mixture);
            otherwise the sum of the layers' marginal entropies, an upper bound on it.
        layer_entropy: ``(L,)`` H(A_l) per layer.
        layer_conditional_entropy: ``(L,)`` H(A_l | X) per layer.
        layer_mutual_information: ``(L,)`` I(A_l; X) per layer.
        usage: ``(L, M)`` share of each module per layer: the batch-marginal q(a_l), or the frequency of
            each module among the given choices.
        effective_modules: ``(L,)`` exp(H(A_l)): how many modules a layer uses, as if equally often.
        collapsed_layers: layers whose H(A_l) is below ``collapse_fraction * log M``.
    """

    entropy: float
    conditional_entropy: float
    mutual_information: float
    joint_exact: bool
    layer_entropy: Tensor
    layer_conditional_entropy: Tensor
    layer_mutual_information: Tensor
    usage: Tensor
    effective_modules: Tensor
    collapsed_layers: tuple[int, ...]

    @property
    def collapsed(self) -> bool:
        """Whether any layer has collapsed onto few modules."""
        return bool(self.collapsed_layers)

    def scalars(self, prefix: str = "routing/") -> dict[str, float]:
        """Flat scalars for logging (TensorBoard, JSONL)."""
        out = {
            f"{prefix}H(A)": self.entropy,
            f"{prefix}H(A|X)": self.conditional_entropy,
            f"{prefix}I(A;X)": self.mutual_information,
            f"{prefix}collapsed": float(self.collapsed),
        }
        for layer, n in enumerate(self.effective_modules.tolist()):
            out[f"{prefix}effective_modules/layer{layer}"] = n
        return out


def entropy(p: Tensor, dim: int = -1) -> Tensor:
    """Entropy in nats of the distributions ``p`` along ``dim`` (0 log 0 = 0); differentiable."""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dim)


def routing_stats(probs: Tensor, *, choice: Tensor | None = None, collapse_fraction: float = 0.5) -> RoutingStats:
    """H(A), H(A|X), I(A;X), per-layer usage and a collapse flag from a batch of routing distributions.

    Args:
        probs: ``(B, L, M)`` p(a_l | x_n) for each example, layer and module (``(B, M)`` for one layer).
        choice: ``(B, L, k)`` or ``(B, L)`` chosen modules; when given, ``usage`` counts them instead of
            averaging ``probs``.
        collapse_fraction: a layer has collapsed when H(A_l) < collapse_fraction * log M.

    Returns:
        the statistics, as floats and small tensors (no gradient).

    Raises:
        ShapeError: ``probs`` is not (B, L, M) with rows summing to one, or ``choice`` does not match.
        ConfigError: ``collapse_fraction`` outside [0, 1].

    Example:
        >>> stats = routing_stats(torch.eye(4).unsqueeze(1))  # 4 inputs, each sure of its own module
        >>> round(stats.mutual_information, 4) == round(math.log(4), 4), stats.conditional_entropy
        (True, 0.0)
    """
    if not 0.0 <= collapse_fraction <= 1.0:
        raise ConfigError(f"collapse_fraction must be in [0, 1], got {collapse_fraction}")
    if not isinstance(probs, Tensor) or probs.dim() not in (2, 3) or probs.shape[0] == 0:
        shape = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
        raise ShapeError(f"probs must be (batch, layers, modules) or (batch, modules), got {shape}")
    p = probs.detach().double()
    if p.dim() == 2:
        p = p.unsqueeze(1)
    b, n_layers, m = p.shape
    if p.min() < 0 or not torch.allclose(p.sum(-1), p.new_ones(b, n_layers), atol=1e-4):
        raise ShapeError("probs must be probability distributions over modules (non-negative, summing to 1)")

    layer_cond = entropy(p).mean(0)  # (L,)
    marginal = p.mean(0)  # (L, M)
    layer_ent = entropy(marginal)  # (L,)
    conditional = float(layer_cond.sum())
    joint_exact = m**n_layers <= _JOINT_LIMIT
    if joint_exact:
        joint = p[:, 0]
        for layer in range(1, n_layers):
            joint = (joint.unsqueeze(2) * p[:, layer].unsqueeze(1)).flatten(1)  # (B, M^(l+1))
        joint_entropy = float(entropy(joint.mean(0)))
    else:
        joint_entropy = float(layer_ent.sum())

    usage = marginal
    if choice is not None:
        c = choice.unsqueeze(-1) if choice.dim() == 2 else choice
        if c.dim() != 3 or c.shape[:2] != (b, n_layers):
            raise ShapeError(f"choice must be ({b}, {n_layers}, k) or ({b}, {n_layers}), got {tuple(choice.shape)}")
        if c.numel() and (c.min() < 0 or c.max() >= m):
            raise ShapeError(f"choice holds module indices outside 0..{m - 1}")
        counts = torch.stack([torch.bincount(c[:, layer].flatten(), minlength=m) for layer in range(n_layers)])
        usage = counts.double() / counts.sum(1, keepdim=True).clamp_min(1)
    collapsed = tuple(i for i, h in enumerate(layer_ent.tolist()) if h < collapse_fraction * math.log(m) - 1e-12)
    return RoutingStats(
        entropy=joint_entropy,
        conditional_entropy=conditional,
        mutual_information=joint_entropy - conditional,
        joint_exact=joint_exact,
        layer_entropy=layer_ent.float(),
        layer_conditional_entropy=layer_cond.float(),
        layer_mutual_information=(layer_ent - layer_cond).float(),
        usage=usage.float(),
        effective_modules=torch.exp(layer_ent).float(),
        collapsed_layers=collapsed,
    )
