"""Building blocks: an MLP, a small CNN stem and attention pooling over a feature map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..types import FeatureMap, Image
from ._signature import Signature

__all__ = ["MLP", "CNNStem", "FeatureAttention", "coordinate_channels"]


class MLP(nn.Module):
    """A multi-layer perceptron ``d_in -> hidden... -> d_out`` with ReLU between layers.

    Args:
        d_in: input features.
        d_out: output features.
        hidden: widths of the hidden layers (empty for a single linear map).
        dropout: dropout after each hidden activation.
    """

    def __init__(self, d_in: int, d_out: int, hidden: Sequence[int] = (64,), *, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        widths = [d_in, *hidden, d_out]
        if any(not isinstance(w, int) or w < 1 for w in widths):
            raise ConfigError(f"MLP widths must be positive ints, got {widths}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
                if dropout:
                    layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.d_in = d_in

    def forward(self, x: Tensor) -> Tensor:
        """``x: (..., d_in)`` -> ``(..., d_out)``."""
        if x.shape[-1] != self.d_in:
            raise ShapeError(f"MLP expects last dimension {self.d_in}, got shape {tuple(x.shape)}")
        return self.net(x)


def coordinate_channels(batch: int, height: int, width: int, *, like: Tensor) -> Tensor:
    """Two channels holding each cell's x and y coordinate in [-1, 1]: ``(batch, 2, height, width)``."""
    ys = torch.linspace(-1, 1, height, dtype=like.dtype, device=like.device)
    xs = torch.linspace(-1, 1, width, dtype=like.dtype, device=like.device)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # (2, H, W): x then y
    return grid.expand(batch, 2, height, width)


class CNNStem(nn.Module):
    """A small convolutional feature extractor: strided 3x3 convolutions with ReLU.

    Args:
        in_channels: image channels.
        channels: output channels of each stage; each stage halves the resolution.
        coords: append two coordinate channels (x, y) to the output features, so that downstream
            modules can reason about position.
        norm: batch normalisation after each convolution (faster, steadier training).
        width: channels of a first full-resolution 3x3 convolution (0: none).

    Shapes:
        ``images: (batch, in_channels, H, W)`` -> ``(batch, channels[-1] (+2), H / 2**stages, W / 2**stages)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64),
        *,
        coords: bool = True,
        norm: bool = True,
        width: int = 0,
    ) -> None:
        super().__init__()
        if not channels:
            raise ConfigError("CNNStem needs at least one stage in channels")
        layers: list[nn.Module] = []
        prev = in_channels
        for c, stride in ([(width, 1)] if width else []) + [(c, 2) for c in channels]:
            layers.append(nn.Conv2d(prev, c, 3, stride=stride, padding=1, bias=not norm))
            layers += [nn.BatchNorm2d(c), nn.ReLU()] if norm else [nn.ReLU()]
            prev = c
        layers += [nn.Conv2d(prev, prev, 1), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.coords = coords
        self.out_channels = prev + (2 if coords else 0)
        self.channels, self.norm, self.width = tuple(channels), norm, width

    @property
    def signature(self) -> Signature:
        """``images: Image(in_channels)`` in [0, 1] -> ``FeatureMap(out_channels)`` (how :mod:`modnets.hub`
        stores and finds a stem)."""
        return Signature(inputs={"images": Image(self.in_channels)}, output=FeatureMap(self.out_channels))

    def hub_config(self) -> dict:
        """The constructor's keyword arguments (what :mod:`modnets.hub` stores to rebuild the module)."""
        return {"in_channels": self.in_channels, "channels": list(self.channels), "coords": self.coords,
                "norm": self.norm, "width": self.width}

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ShapeError(
                f"CNNStem expects images (batch, {self.in_channels}, H, W), got shape {tuple(images.shape)}"
            )
        f = self.net(images)
        if self.coords:
            f = torch.cat([f, coordinate_channels(f.shape[0], f.shape[2], f.shape[3], like=f)], dim=1)
        return f


class FeatureAttention(nn.Module):
    """Attend over a feature map with an attention map and return one feature vector per example.

    Args:
        normalize: ``"sum"`` divides by the total attention (a weighted average), ``"softmax"``
            normalises the map with a softmax over positions first, ``"odds"`` weights each cell by
            ``a / (1 - a)`` normalised (for a sigmoid mask, the softmax of its logits: the most certain
            cells dominate), ``"none"`` returns the plain weighted sum.

    Shapes:
        ``features: (batch, C, H, W)``, ``attention: (batch, H, W)`` -> ``(batch, C)``.
    """

    def __init__(self, normalize: str = "sum", *, eps: float = 1e-6) -> None:
        super().__init__()
        if normalize not in ("sum", "softmax", "odds", "none"):
            raise ConfigError(f"normalize must be 'sum', 'softmax', 'odds' or 'none', got {normalize!r}")
        self.normalize = normalize
        self.eps = eps

    def forward(self, features: Tensor, attention: Tensor) -> Tensor:
        if features.dim() != 4 or attention.shape != (features.shape[0], *features.shape[2:]):
            raise ShapeError(
                f"FeatureAttention expects features (B, C, H, W) and attention (B, H, W), got "
                f"{tuple(features.shape)} and {tuple(attention.shape)}"
            )
        a = attention.flatten(1)  # (B, HW)
        if self.normalize == "softmax":
            a = F.softmax(a, dim=1)
        elif self.normalize == "odds":
            logit = torch.logit(a.clamp(self.eps, 1 - self.eps))
            a = F.softmax(logit, dim=1)
        elif self.normalize == "sum":
            a = a / (a.sum(1, keepdim=True) + self.eps)
        return torch.bmm(features.flatten(2), a.unsqueeze(2)).squeeze(2)  # (B, C, HW) @ (B, HW, 1)
