"""Module/concept decomposition (IMN Table I): which identity module wins the images of each ground-truth
concept, and the plots that go with it (identity-only reconstructions, identity usage over training)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import ShapeError
from ._figures import save_figure

__all__ = ["Decomposition", "decomposition_table", "factor_alignment", "plot_identity_images", "plot_usage_curves"]


class Decomposition(NamedTuple):
    """How the images of each concept split over the modules.

    Attributes:
        fractions: ``(n_concepts, n_modules)``, row ``c``: the share of concept ``c``'s images won by each module
            (rows of concepts without images are zero).
        dominant: ``(n_concepts,)`` the module winning most of each concept's images.
        dominant_fraction: ``(n_concepts,)`` that module's share.
        distinct_dominant: how many different modules are dominant (= n_concepts for a one-to-one split).
    """

    fractions: Tensor
    dominant: Tensor
    dominant_fraction: Tensor
    distinct_dominant: int


def decomposition_table(concepts: Tensor, modules: Tensor, *, n_concepts: int, n_modules: int) -> Decomposition:
    """The Table I analogue: for each ground-truth concept, the fraction of its images won by each module.

    Args:
        concepts: ``(N,)`` ground-truth concept of each image (e.g. the shape).
        modules: ``(N,)`` the module in each image's winning combination (e.g. the identity module).
        n_concepts: number of concepts.
        n_modules: number of modules.

    Example:
        >>> t = decomposition_table(torch.tensor([0, 0, 1, 1]), torch.tensor([2, 2, 0, 1]), n_concepts=2,
        ...                         n_modules=3)
        >>> t.fractions.tolist(), t.distinct_dominant
        ([[0.0, 0.0, 1.0], [0.5, 0.5, 0.0]], 2)
    """
    if concepts.shape != modules.shape or concepts.dim() != 1:
        raise ShapeError(f"concepts and modules must both be (N,), got {tuple(concepts.shape)} and "
                         f"{tuple(modules.shape)}")
    counts = torch.zeros(n_concepts, n_modules)
    counts.index_put_((concepts.long(), modules.long()), torch.ones(concepts.shape[0]), accumulate=True)
    fractions = counts / counts.sum(1, keepdim=True).clamp(min=1)
    best, dominant = fractions.max(1)
    return Decomposition(fractions, dominant, best, len(set(dominant[counts.sum(1) > 0].tolist())))


def factor_alignment(factors: Tensor, modules: Tensor, names: Sequence[str]) -> dict[str, float]:
    """How much each ground-truth factor has to do with which module wins: the normalised mutual information
    (arithmetic normalisation, 0 = independent, 1 = the module determines the factor and back).

    Args:
        factors: ``(N, F)`` integer labels of ``F`` factors.
        modules: ``(N,)`` the winning module of each example.
        names: the ``F`` factor names.

    Returns:
        factor name -> NMI between that factor and the winning module.
    """
    from sklearn.metrics import normalized_mutual_info_score

    if factors.dim() != 2 or factors.shape[0] != modules.shape[0] or factors.shape[1] != len(names):
        raise ShapeError(f"factors must be (N, {len(names)}) with N = len(modules) = {modules.shape[0]}, got "
                         f"{tuple(factors.shape)}")
    return {name: float(normalized_mutual_info_score(factors[:, i].numpy(), modules.numpy()))
            for i, name in enumerate(names)}


def plot_identity_images(images: Tensor, path: str | Path, *, titles: Sequence[str] | None = None,
                         rows: Mapping[str, Tensor] | None = None) -> None:
    """Save a grid of identity-only reconstructions (IMN Fig. 2b), one row per model.

    Args:
        images: ``(n, 3, H, W)`` one image per identity module (used when ``rows`` is not given).
        path: PNG file.
        titles: one title per column.
        rows: row label -> ``(n, 3, H, W)`` images, for several models in one figure.
    """
    from matplotlib.figure import Figure

    rows = dict(rows) if rows is not None else {"": images}
    n = max(r.shape[0] for r in rows.values())
    fig = Figure(figsize=(1.6 * n, 1.8 * len(rows)))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for i, (label, imgs) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[i, j]
            ax.axis("off")
            if j < imgs.shape[0]:
                ax.imshow(imgs[j].clamp(0, 1).permute(1, 2, 0).cpu().numpy())
                if titles is not None and i == 0:
                    ax.set_title(titles[j], fontsize=8)
        axes[i, 0].text(-0.1, 0.5, label, transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=8)
    save_figure(fig, path, dpi=100)


def plot_usage_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path, *,
                      prefix: str = "usage_") -> None:
    """Save the share of each batch won by each module over training, one panel per run.

    Args:
        histories: run label -> logged rows (``step`` and ``usage_j`` keys, as :func:`~modnets.train.fit` logs).
        path: PNG file.
        prefix: the key prefix of the usage columns.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(histories), 3.2))
    axes = fig.subplots(1, len(histories), squeeze=False)
    for ax, (label, rows) in zip(axes[0], histories.items(), strict=True):
        keys = sorted({k for r in rows for k in r if k.startswith(prefix)})
        steps = [r["step"] for r in rows]
        for k in keys:
            ax.plot(steps, [r.get(k, float("nan")) for r in rows], label=k.removeprefix(prefix))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("share of batch")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, title="identity", title_fontsize=7)
    save_figure(fig, path, dpi=100)
