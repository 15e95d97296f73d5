"""The surrogate gradient module (SGM, thesis 4.2.3 and Fig. 4.5).

A module without direct supervision (NMN's ``find``) can be trained alone by placing a small, fully
differentiable module between its output and the nearest loss: the SGM. It is not meant to solve the task,
only to give the module a gradient that points the way the full model's would. It reads the module's output
the way the full model does (a :class:`MaskReadout`: features attended by the mask for questions about an
object, the mask itself for questions about the whole map), maps it to the loss's targets with one
low-rank linear map ``W = W_A W_B`` (``W_A: (N, L)``, ``W_B: (L, M)``, ``L << min(N, M)``) and keeps a
dropout between the two factors that stays on for Monte-Carlo estimates of its predictive variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._blocks import FeatureAttention

__all__ = ["LowRankLinear", "MCDropoutPrediction", "MaskReadout", "SurrogateGradientModule"]


class LowRankLinear(nn.Module):
    """A linear map with a factorised weight ``W = W_A W_B`` of rank ``rank``.

    Args:
        d_in: N, input features.
        d_out: M, output features.
        rank: L, with ``1 <= L < min(N, M)``.
        bias: add a bias of size M.

    Shapes:
        ``x: (..., N)`` -> ``(..., M)``; ``first(x)``: ``(..., L)``.

    Example:
        >>> lin = LowRankLinear(64, 10, rank=4)
        >>> tuple(lin.weight_a.shape), tuple(lin.weight_b.shape), tuple(lin.weight.shape)
        ((64, 4), (4, 10), (64, 10))
    """

    def __init__(self, d_in: int, d_out: int, *, rank: int, bias: bool = True) -> None:
        super().__init__()
        for name, value in (("d_in", d_in), ("d_out", d_out), ("rank", rank)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"LowRankLinear.{name} must be an int >= 1, got {value!r}")
        if rank >= min(d_in, d_out):
            raise ConfigError(
                f"LowRankLinear.rank must be < min(d_in, d_out) = {min(d_in, d_out)} (a low-rank map), got {rank}"
            )
        # Each factor initialised like a linear layer of its own fan-in, so W x starts at a unit-ish scale.
        self.weight_a = nn.Parameter(torch.randn(d_in, rank) * d_in**-0.5)
        self.weight_b = nn.Parameter(torch.randn(rank, d_out) * rank**-0.5)
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None
        self.d_in, self.d_out, self.rank = d_in, d_out, rank

    @property
    def weight(self) -> Tensor:
        """``(N, M)`` the full weight ``W_A W_B`` (rank at most L)."""
        return self.weight_a @ self.weight_b

    def first(self, x: Tensor) -> Tensor:
        """``x: (..., N)`` -> ``(..., L)``: the first factor only."""
        if x.shape[-1] != self.d_in:
            raise ShapeError(f"LowRankLinear expects last dimension {self.d_in}, got shape {tuple(x.shape)}")
        return x @ self.weight_a

    def second(self, h: Tensor) -> Tensor:
        """``h: (..., L)`` -> ``(..., M)``: the second factor and the bias."""
        out = h @ self.weight_b
        return out if self.bias is None else out + self.bias

    def forward(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}, rank={self.rank}, bias={self.bias is not None}"


class MaskReadout(nn.Module):
    """Read an attention mask the way the NMN answering modules do, as one vector per example.

    Per example, ``route`` picks the reading: ``0`` (``"attend"``, as ``describe``) the features
    attended by the mask, ``1`` (``"map"``, as ``exist`` / ``count``) the mask itself, flattened. Both sit in
    one vector of size ``C + H * W`` with the unused part zeroed, so one linear map serves every question.

    Args:
        channels: C, feature channels.
        grid: (H, W) of the mask and the features.
        attention: how the features are pooled (see :class:`FeatureAttention`): ``"odds"`` for sigmoid masks,
            ``"sum"`` for heat maps, as the answering modules do.

    Shapes:
        ``mask: (B, H, W)``, ``features: (B, C, H, W)``, ``route: (B,)`` long -> ``(B, C + H * W)``.
    """

    ROUTES = ("attend", "map")

    def __init__(self, channels: int, grid: tuple[int, int], *, attention: str = "odds") -> None:
        super().__init__()
        if not (isinstance(channels, int) and channels >= 1):
            raise ConfigError(f"MaskReadout.channels must be an int >= 1, got {channels!r}")
        if not (isinstance(grid, tuple | list) and len(grid) == 2 and all(isinstance(g, int) and g >= 1 for g in grid)):
            raise ConfigError(f"MaskReadout.grid must be two ints >= 1 (H, W), got {grid!r}")
        self.attend = FeatureAttention(attention)
        self.channels, self.grid = channels, tuple(grid)
        self.d_out = channels + grid[0] * grid[1]

    def forward(self, mask: Tensor, *, features: Tensor, route: Tensor) -> Tensor:
        b = mask.shape[0]
        if mask.shape[1:] != self.grid or features.shape != (b, self.channels, *self.grid):
            raise ShapeError(
                f"MaskReadout expects mask (B, {self.grid[0]}, {self.grid[1]}) and features (B, {self.channels}, "
                f"{self.grid[0]}, {self.grid[1]}), got {tuple(mask.shape)} and {tuple(features.shape)}"
            )
        if route.shape != (b,):
            raise ShapeError(f"MaskReadout expects route (B,) = ({b},), got {tuple(route.shape)}")
        is_map = (route == 1).to(mask.dtype).unsqueeze(1)  # (B, 1)
        attended = self.attend(features, mask)  # (B, C)
        return torch.cat([(1 - is_map) * attended, is_map * mask.flatten(1)], dim=1)


@dataclass(frozen=True)
class MCDropoutPrediction:
    """Monte-Carlo dropout prediction of an SGM.

    Attributes:
        probs: ``(B, M)`` the mean over samples of the class probabilities.
        variance: ``(B,)`` the variance over samples of the probability of each example's predicted class
            (the class with the largest mean probability): the predictive uncertainty.
        samples: ``(T, B, M)`` the class probabilities of every dropout sample.
    """

    probs: Tensor
    variance: Tensor
    samples: Tensor


class SurrogateGradientModule(nn.Module):
    """A small, differentiable stand-in for the modules between a trained module and its nearest loss.

    Args:
        d_out: M, the number of target classes (the loss's output size).
        rank: L, the rank of the factorised weight (``L << min(N, M)``).
        readout: turns the trained module's output (and context) into ``(B, N)`` vectors the way the full
            model reads it (a :class:`MaskReadout`); ``None`` when the inputs are such vectors already.
        d_in: N; taken from ``readout.d_out`` when a readout is given.
        dropout: drop probability between the two factors; used in training and always in
            :meth:`predictive` (Monte-Carlo dropout).
        bias: whether the linear map has a bias.

    Shapes:
        ``forward(*inputs, **context)`` -> ``(B, M)`` logits.

    Example:
        >>> sgm = SurrogateGradientModule(readout=MaskReadout(8, (4, 4)), d_out=5, rank=2)
        >>> mask, features = torch.rand(3, 4, 4), torch.randn(3, 8, 4, 4)
        >>> sgm(mask, features=features, route=torch.tensor([0, 1, 0])).shape
        torch.Size([3, 5])
        >>> sgm.predictive(mask, features=features, route=torch.tensor([0, 1, 0]), samples=10).variance.shape
        torch.Size([3])
    """

    def __init__(
        self,
        *,
        d_out: int,
        rank: int,
        readout: nn.Module | None = None,
        d_in: int | None = None,
        dropout: float = 0.3,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if readout is not None:
            inferred = getattr(readout, "d_out", None)
            if d_in is None:
                d_in = inferred
            if d_in is None or (inferred is not None and inferred != d_in):
                raise ConfigError(
                    f"SurrogateGradientModule.d_in must match the readout's d_out ({inferred}), got {d_in!r}"
                )
        if d_in is None:
            raise ConfigError("SurrogateGradientModule needs d_in, or a readout with a d_out attribute")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"SurrogateGradientModule.dropout must be in [0, 1), got {dropout!r}")
        self.readout = readout
        self.linear = LowRankLinear(d_in, d_out, rank=rank, bias=bias)
        self.dropout = dropout

    def features(self, *inputs: Tensor, **context: Tensor) -> Tensor:
        """``(B, N)``: the readout of the inputs (or the single input itself)."""
        if self.readout is not None:
            return self.readout(*inputs, **context)
        if len(inputs) != 1 or context:
            raise ShapeError("an SGM without a readout takes one (B, N) tensor")
        x = inputs[0]
        if x.dim() != 2:
            raise ShapeError(f"an SGM without a readout takes (B, N) inputs, got shape {tuple(x.shape)}")
        return x

    def forward(self, *inputs: Tensor, **context: Tensor) -> Tensor:
        h = self.linear.first(self.features(*inputs, **context))  # (B, L)
        return self.linear.second(F.dropout(h, self.dropout, training=self.training))

    def predictive(self, *inputs: Tensor, samples: int = 20, **context: Tensor) -> MCDropoutPrediction:
        """Monte-Carlo dropout: ``samples`` forward passes with dropout on, in one batched product.

        Args:
            inputs: as for ``forward``.
            samples: T, dropout samples (>= 2).
            context: as for ``forward``.

        Returns:
            mean probabilities ``(B, M)``, predictive variance ``(B,)`` and the samples ``(T, B, M)``.
        """
        if not isinstance(samples, int) or samples < 2:
            raise ConfigError(f"samples must be an int >= 2, got {samples!r}")
        h = self.linear.first(self.features(*inputs, **context))  # (B, L)
        h = F.dropout(h.unsqueeze(0).expand(samples, *h.shape), self.dropout, training=True)  # (T, B, L)
        probs = F.softmax(self.linear.second(h), dim=-1)  # (T, B, M)
        mean = probs.mean(0)
        chosen = mean.argmax(1)  # (B,)
        picked = probs.gather(2, chosen.view(1, -1, 1).expand(samples, -1, 1)).squeeze(2)  # (T, B)
        return MCDropoutPrediction(mean, picked.var(0), probs)

