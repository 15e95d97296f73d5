"""Independent Modular Networks (IMN, seed 002): compositional modules that see the image, identity modules
that never do, and one decoder shared by every combination.

A compositional module is the encoder of a Lie-group VAE: a CNN gives ``mu, logvar`` of its latent ``z``
and the module's transform is ``T = exp(sum_i z_i A_i)`` with a learnable Lie-algebra basis ``A`` (eq. 1).
An identity module is a learnable matrix ``exp(B_j)``. The decoder maps any transform to an image. Which
combination explains an image, and the training objective, live in :mod:`modnets.train`
(:class:`~modnets.train.WinnerTakeAll`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .._checks import check_image_size
from ..errors import ConfigError, ShapeError
from ..types import Transform

__all__ = [
    "IMN",
    "IMN_DECODERS",
    "CompositionalModule",
    "DeconvDecoder",
    "IdClassifier",
    "IdentityModules",
    "LieEncoding",
    "TransformDecoder",
    "imn",
]

#: the decoders :func:`imn` can build
IMN_DECODERS = ("mlp", "deconv")


class LieEncoding(NamedTuple):
    """The posterior of the compositional modules' latents.

    Attributes:
        mu: ``(B, m, d)`` means.
        logvar: ``(B, m, d)`` log-variances.
    """

    mu: Tensor
    logvar: Tensor


class CompositionalModule(nn.Module):
    """The encoder of a Lie-group VAE: ``x -> (mu, logvar)``, and ``z -> exp(sum_i z_i A_i)``.

    Args:
        image_size: height and width of the input images (a power of two >= 8).
        latent_dim: ``d``, the latent size (and the number of Lie-algebra basis matrices).
        matrix_size: ``k``, transforms are ``k x k``.
        channels: CNN width.
    """

    def __init__(self, *, image_size: int, latent_dim: int, matrix_size: int, channels: int = 32):
        super().__init__()
        check_image_size(image_size)
        layers: list[nn.Module] = []
        c_in, size = 3, image_size
        while size > 4:
            layers += [nn.Conv2d(c_in, channels, 4, stride=2, padding=1), nn.ReLU()]
            c_in, size = channels, size // 2
        self.cnn = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 16, 128), nn.ReLU(),
                                 nn.Linear(128, 2 * latent_dim))
        self.basis = nn.Parameter(torch.randn(latent_dim, matrix_size, matrix_size) / matrix_size)
        self.latent_dim = latent_dim

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: (B, 3, H, W)`` -> ``mu, logvar``, each ``(B, d)``."""
        mu, logvar = self.cnn(x).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 8.0)

    def algebra_penalty(self) -> Tensor:
        """``sum_{i != j} ||A_i A_j||^2``: zero when the basis satisfies ``A_i A_j = 0`` (the LVAE condition
        under which the decoder's Hessian in the latents is diagonal, eq. 2)."""
        prod = torch.einsum("iab,jbc->ijac", self.basis, self.basis)
        off = ~torch.eye(self.latent_dim, dtype=torch.bool, device=prod.device)
        return prod[off].pow(2).sum()


class IdentityModules(nn.Module):
    """``n`` learnable transforms ``exp(B_j)`` that never see the input.

    Args:
        n: number of identity modules.
        matrix_size: ``k``.
        spread: standard deviation of the initial Lie-algebra elements (distinct starting identities).
    """

    def __init__(self, n: int, matrix_size: int, *, spread: float = 0.5):
        super().__init__()
        self.algebra = nn.Parameter(spread * torch.randn(n, matrix_size, matrix_size) / matrix_size**0.5)

    def forward(self) -> Tensor:
        """``(n, k, k)`` the identity transforms."""
        return Transform().constrain(self.algebra)


class TransformDecoder(nn.Module):
    """Decodes a transform to an image: an MLP on the flattened matrix ending in a linear layer.

    ``decoder(T) = head(features(T))``; the linear ``head`` lets the winner-take-all objective score every
    combination exactly from the features alone (:class:`~modnets.train.WinnerTakeAllConfig` ``scorer="fast"``).

    Args:
        matrix_size: ``k``.
        image_size: output height and width.
        hidden: width of the hidden layers (and of the features fed to the head).
    """

    def __init__(self, *, matrix_size: int, image_size: int, hidden: int = 256):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(matrix_size * matrix_size, hidden), nn.ReLU(),
                                      nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 3 * image_size * image_size)
        self.image_size = image_size

    def forward(self, transform: Tensor) -> Tensor:
        """``transform: (..., k, k)`` -> ``(..., 3, H, W)``."""
        out = self.head(self.features(transform.flatten(-2)))
        return out.unflatten(-1, (3, self.image_size, self.image_size))


class DeconvDecoder(nn.Module):
    """Decodes a transform to an image as the Lie-group VAE's decoder does: two linear layers from the flattened
    matrix to a ``(channels, 4, 4)`` map, then transposed convolutions (kernel 4, stride 2) up to the image size.

    Nothing after its features is linear, so :class:`~modnets.train.WinnerTakeAll` scores it with the exact
    scorer (every candidate decoded), not the fast one.

    Args:
        matrix_size: ``k``.
        image_size: output height and width (a power of two >= 8).
        hidden: width of the first linear layer.
        channels: channels of the transposed convolutions.
    """

    def __init__(self, *, matrix_size: int, image_size: int, hidden: int = 256, channels: int = 32):
        super().__init__()
        check_image_size(image_size)
        layers: list[nn.Module] = [nn.Linear(matrix_size * matrix_size, hidden), nn.ReLU(),
                                   nn.Linear(hidden, channels * 16), nn.ReLU(), nn.Unflatten(-1, (channels, 4, 4))]
        size = 4
        while size < image_size:
            size *= 2
            last = size == image_size
            layers += [nn.ConvTranspose2d(channels, 3 if last else channels, 4, stride=2, padding=1)]
            if not last:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.image_size = image_size

    def forward(self, transform: Tensor) -> Tensor:
        """``transform: (..., k, k)`` -> ``(..., 3, H, W)``."""
        lead = transform.shape[:-2]
        out = self.net(transform.reshape(-1, transform.shape[-2] * transform.shape[-1]))
        return out.view(*lead, 3, self.image_size, self.image_size)


class IdClassifier(nn.Module):
    """A fully connected classifier of transforms: the ground-truth identity (shape) from an identity matrix.

    Args:
        matrix_size: ``k``.
        n_classes: number of identity classes (4 shapes).
        hidden: feature width.
    """

    def __init__(self, *, matrix_size: int, n_classes: int, hidden: int = 64):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(matrix_size * matrix_size, hidden), nn.ReLU(),
                                      nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, transform: Tensor) -> tuple[Tensor, Tensor]:
        """``transform: (B, k, k)`` -> ``(features (B, hidden), logits (B, n_classes))``."""
        h = self.features(transform.flatten(-2))
        return h, self.head(h)


class IMN(nn.Module):
    """The IMN: ``m`` compositional modules, ``n`` identity modules, one decoder, an optional ID classifier.

    Args:
        compositional: the ``m`` compositional modules (same latent and matrix size).
        identities: the identity modules.
        decoder: maps ``(..., k, k)`` transforms to ``(..., 3, H, W)`` images.
        id_classifier: optional :class:`IdClassifier` (trained with the ID-classifier loss).
    """

    def __init__(
        self,
        *,
        compositional: list[CompositionalModule],
        identities: IdentityModules,
        decoder: nn.Module,
        id_classifier: IdClassifier | None = None,
    ):
        super().__init__()
        if not compositional:
            raise ConfigError("an IMN needs at least one compositional module, got none")
        sizes = {(c.latent_dim, c.basis.shape[-1]) for c in compositional}
        if len(sizes) != 1 or next(iter(sizes))[1] != identities.algebra.shape[-1]:
            raise ShapeError(f"compositional (latent_dim, matrix_size) {sorted(sizes)} must agree with each other "
                             f"and with the identity matrix size {identities.algebra.shape[-1]}")
        self.compositional = nn.ModuleList(compositional)
        self.identities = identities
        self.decoder = decoder
        self.id_classifier = id_classifier

    @property
    def m(self) -> int:
        """Number of compositional modules."""
        return len(self.compositional)

    @property
    def n(self) -> int:
        """Number of identity modules."""
        return self.identities.algebra.shape[0]

    @property
    def matrix_size(self) -> int:
        return self.identities.algebra.shape[-1]

    def encode(self, x: Tensor) -> LieEncoding:
        """``x: (B, 3, H, W)`` -> the posterior of every compositional module, ``(B, m, d)`` each."""
        mus, logvars = zip(*(c.encode(x) for c in self.compositional), strict=True)
        return LieEncoding(torch.stack(mus, 1), torch.stack(logvars, 1))

    def transforms(self, z: Tensor) -> Tensor:
        """``z: (..., m, d)`` -> ``(..., m, k, k)``, module ``i``'s ``exp(sum_j z_ij A_ij)``."""
        basis = torch.stack([c.basis for c in self.compositional])  # (m, d, k, k)
        # matrix_exp needs a contiguous input
        return Transform().constrain(torch.einsum("...md,mdab->...mab", z, basis).contiguous())

    def algebra_penalties(self) -> Tensor:
        """``(m,)`` each compositional module's :meth:`CompositionalModule.algebra_penalty`."""
        return torch.stack([c.algebra_penalty() for c in self.compositional])

    @torch.no_grad()
    def identity_images(self) -> Tensor:
        """``(n, 3, H, W)`` the decoder's image of each identity alone (no input, no compositional module)."""
        return self.decoder(self.identities())


def imn(
    *,
    image_size: int = 64,
    m: int = 5,
    n: int = 5,
    latent_dim: int = 3,
    matrix_size: int = 8,
    hidden: int = 256,
    channels: int = 16,
    id_classifier: bool = False,
    n_classes: int = 4,
    decoder: str = "mlp",
    identity_spread: float = 0.5,
) -> IMN:
    """The IMN preset of the paper: ``m = n = 5`` by default, LVAE encoders, a decoder, and optionally the ID
    classifier.

    ``decoder="mlp"`` (:class:`TransformDecoder`, ending in a linear layer, so the fast scorer applies) or
    ``"deconv"`` (:class:`DeconvDecoder`, the Lie-group VAE's; exact scorer only). ``identity_spread`` is the
    standard deviation of the identities' initial Lie-algebra elements.

    Example:
        >>> net = imn(image_size=16, m=2, n=3, hidden=32, channels=8)
        >>> net.identity_images().shape
        torch.Size([3, 3, 16, 16])
    """
    for name, value in (("m", m), ("n", n), ("latent_dim", latent_dim), ("matrix_size", matrix_size)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"imn: {name} must be an int >= 1, got {value!r}")
    if decoder not in IMN_DECODERS:
        raise ConfigError(f"imn: decoder must be one of {IMN_DECODERS}, got {decoder!r}")
    return IMN(
        compositional=[CompositionalModule(image_size=image_size, latent_dim=latent_dim, matrix_size=matrix_size,
                                           channels=channels) for _ in range(m)],
        identities=IdentityModules(n, matrix_size, spread=identity_spread),
        decoder=(TransformDecoder(matrix_size=matrix_size, image_size=image_size, hidden=hidden) if decoder == "mlp"
                 else DeconvDecoder(matrix_size=matrix_size, image_size=image_size, hidden=hidden,
                                    channels=2 * channels)),
        id_classifier=IdClassifier(matrix_size=matrix_size, n_classes=n_classes) if id_classifier else None,
    )
