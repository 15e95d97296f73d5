"""Output distributions: ``log p(y | x, a)`` per example, the quantity every router-training algorithm
maximises (and REINFORCE and EM use as reward and score)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["GaussianLikelihood", "LogLikelihood", "categorical_log_likelihood", "check_labels"]

#: ``(output (B, ...), target (B, ...)) -> (B,)`` log-likelihood of each example.
LogLikelihood = Callable[[Tensor, Tensor], Tensor]


def check_labels(target: Tensor, n_classes: int, *, name: str = "y") -> None:
    """Raise :class:`~modnets.errors.ConfigError` unless ``target`` holds integer class ids in [0, n_classes).

    Args:
        target: (B,) class ids.
        n_classes: C.
        name: the batch key named in the message.
    """
    if not isinstance(target, Tensor) or target.dtype not in (torch.long, torch.int32, torch.int16, torch.uint8):
        got = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise ConfigError(f"batch[{name!r}] must hold integer class ids (a torch.long tensor), got {got}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n_classes):
        raise ConfigError(f"batch[{name!r}] holds class ids in [{int(target.min())}, {int(target.max())}], "
                          f"outside [0, {n_classes}) of the model's {n_classes} outputs")


def categorical_log_likelihood(logits: Tensor, target: Tensor) -> Tensor:
    """``log softmax(logits)[target]`` per example.

    Args:
        logits: (B, C) unnormalised class scores.
        target: (B,) long class ids.

    Returns:
        (B,) log-probabilities of the targets.

    Raises:
        ShapeError: shapes that do not match.
        ConfigError: targets that are not integer class ids in [0, C).

    Example:
        >>> import torch
        >>> categorical_log_likelihood(torch.zeros(2, 4), torch.tensor([0, 3])).exp()
        tensor([0.2500, 0.2500])
    """
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ShapeError(f"logits must be (B, C) and target (B,), got {tuple(logits.shape)} and {tuple(target.shape)}")
    check_labels(target, logits.shape[1])
    return -F.cross_entropy(logits, target, reduction="none")


class GaussianLikelihood:
    """Isotropic Gaussian ``N(y; output, sigma^2 I)``, summed over the non-batch dimensions.

    ``log p = -||y - output||^2 / (2 sigma^2) - (D / 2) log(2 pi sigma^2)``.

    Args:
        sigma: the fixed standard deviation (> 0); it sets how sharply a reward built from the likelihood
            separates good routings from bad ones.

    Example:
        >>> import torch
        >>> ll = GaussianLikelihood(sigma=1.0)
        >>> round(float(ll(torch.zeros(1, 2), torch.zeros(1, 2))[0]), 4) == round(-math.log(2 * math.pi), 4)
        True
    """

    def __init__(self, sigma: float = 1.0):
        if not sigma > 0:
            raise ConfigError(f"sigma must be > 0, got {sigma!r}")
        self.sigma = float(sigma)

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        """(B, ...) output and target -> (B,) log-likelihoods."""
        if output.shape != target.shape or output.dim() < 1:
            raise ShapeError(f"output and target must have the same shape (B, ...), got "
                             f"{tuple(output.shape)} and {tuple(target.shape)}")
        sq = (output - target).pow(2).flatten(1).sum(1)
        d = output[0].numel()
        return -0.5 * sq / self.sigma**2 - 0.5 * d * math.log(2 * math.pi * self.sigma**2)

    def __repr__(self) -> str:
        return f"GaussianLikelihood(sigma={self.sigma})"
