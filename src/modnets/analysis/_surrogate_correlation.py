"""How well an SGM's loss predicts the full model's loss (thesis Fig. 4.7): Pearson r, its p-value, a scatter.

Several versions of a module (different hyper-parameters, epochs) are each trained through the SGM and
scored by its validation loss; each is then frozen in the full model, the rest of the model trained, and
the full model's validation loss measured. If the SGM is a good relative indicator, the two losses rise
and fall together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError, ShapeError
from ._figures import save_figure

__all__ = ["SurrogateCorrelation", "plot_surrogate_correlation", "surrogate_correlation"]


@dataclass(frozen=True)
class SurrogateCorrelation:
    """Correlation between SGM losses and full-model losses.

    Attributes:
        r: Pearson's correlation coefficient (NaN when either loss does not vary).
        p_value: two-sided p-value of r under the null hypothesis of no correlation (NaN as r).
        n: number of module versions.
        spearman: Spearman's rank correlation (NaN as r).
        spearman_p_value: its two-sided p-value.
        r_low: lower end of the 95 % percentile bootstrap interval of r (resampling the versions).
        r_high: upper end of that interval.
    """

    r: float
    p_value: float
    n: int
    spearman: float = math.nan
    spearman_p_value: float = math.nan
    r_low: float = math.nan
    r_high: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)


def _losses(sgm_losses: Sequence[float], full_losses: Sequence[float]) -> tuple[list[float], list[float]]:
    x, y = [float(v) for v in sgm_losses], [float(v) for v in full_losses]
    if len(x) != len(y):
        raise ShapeError(
            f"sgm_losses and full_losses must have one entry per module version, got {len(x)} and {len(y)}"
        )
    if len(x) < 3:
        raise ConfigError(f"a correlation needs at least 3 module versions, got {len(x)}")
    bad = [v for v in (*x, *y) if not math.isfinite(v)]
    if bad:
        raise ConfigError(f"losses must be finite, got {bad[:3]}")
    return x, y


def surrogate_correlation(sgm_losses: Sequence[float], full_losses: Sequence[float], *, resamples: int = 2000,
                          seed: int = 0) -> SurrogateCorrelation:
    """Pearson r with its two-sided p-value and 95 % bootstrap interval, and Spearman's rho, between SGM
    losses and full-model losses.

    Args:
        sgm_losses: ``n`` SGM validation losses, one per module version (n >= 3).
        full_losses: ``n`` full-model validation losses of the same versions.
        resamples: bootstrap resamples of the versions for the interval of r (resamples in which a loss
            does not vary are dropped).
        seed: seeds the resampling.

    Raises:
        ShapeError: different lengths.
        ConfigError: fewer than 3 versions or a non-finite loss.

    Example:
        >>> c = surrogate_correlation([1.0, 2.0, 3.0, 4.0], [2.1, 3.9, 6.2, 8.0])
        >>> round(c.r, 3), c.p_value < 0.01, c.spearman, c.r_low <= c.r <= c.r_high
        (0.999, True, 1.0, True)
    """
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    if not isinstance(resamples, int) or isinstance(resamples, bool) or resamples < 1:
        raise ConfigError(f"resamples must be a positive int, got {resamples!r}")
    x, y = _losses(sgm_losses, full_losses)
    if len(set(x)) == 1 or len(set(y)) == 1:
        return SurrogateCorrelation(math.nan, math.nan, len(x))
    pearson, rank = pearsonr(x, y), spearmanr(x, y)
    xs, ys = np.asarray(x), np.asarray(y)
    picks = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    bx, by = xs[picks], ys[picks]  # (resamples, n)
    bx, by = bx - bx.mean(1, keepdims=True), by - by.mean(1, keepdims=True)
    norm = np.sqrt((bx**2).sum(1) * (by**2).sum(1))
    rs = (bx * by).sum(1)[norm > 0] / norm[norm > 0]
    low, high = (np.percentile(rs, [2.5, 97.5]) if rs.size else (math.nan, math.nan))
    return SurrogateCorrelation(float(pearson.statistic), float(pearson.pvalue), len(x), float(rank.statistic),
                                float(rank.pvalue), float(low), float(high))


def plot_surrogate_correlation(
    sgm_losses: Sequence[float],
    full_losses: Sequence[float],
    path: str | Path,
    *,
    colors: Sequence[float] | None = None,
    color_label: str = "",
    title: str = "SGM loss vs full-model loss",
) -> Path:
    """Scatter of full-model loss against SGM loss with the least-squares line, r and p in the title.

    Args:
        sgm_losses: ``n`` SGM validation losses.
        full_losses: ``n`` full-model validation losses.
        path: the PNG file to write.
        colors: an optional number per version to colour the points by (e.g. its training epochs).
        color_label: the colour bar's label.
        title: the plot's title (r and p are appended).

    Returns:
        the written path.
    """
    import numpy as np
    from matplotlib.figure import Figure

    x, y = _losses(sgm_losses, full_losses)
    corr = surrogate_correlation(x, y)
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    points = ax.scatter(x, y, c=colors if colors is not None else "tab:blue", cmap="viridis")
    if colors is not None:
        fig.colorbar(points, ax=ax, label=color_label)
    if math.isfinite(corr.r):
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(min(x), max(x), 2)
        ax.plot(xs, slope * xs + intercept, c="0.4", lw=0.8, ls="--")
    ax.set_xlabel("SGM validation loss")
    ax.set_ylabel("full-model validation loss")
    ax.set_title(f"{title}\nPearson r = {corr.r:.2f} [{corr.r_low:.2f}, {corr.r_high:.2f}], "
                 f"Spearman {corr.spearman:.2f}, n = {corr.n}")
    return save_figure(fig, path)
