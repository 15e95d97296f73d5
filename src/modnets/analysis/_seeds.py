"""Statistics over seeds: a measurement repeated with several seeds, summarised as mean and spread.

A reproduction reports every number as the mean over its seeds with the sample standard deviation beside
it, and keeps the per-seed values, so that a reader can tell a difference from seed noise: a difference
smaller than the spread is not a result.

Example:
    >>> s = spread([1.0, 2.0, 3.0])
    >>> s.mean, s.std, s.n
    (2.0, 1.0, 3)
    >>> s.format("{:.1f}", count=True)
    '2.0 ± 1.0 (3 seeds)'
    >>> spread([0.25]).format(percent=True)
    '25.0 %'
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import ConfigError
from ._figures import save_figure

__all__ = ["Spread", "plot_spreads", "spread", "spread_by"]


class Spread(NamedTuple):
    """One measurement over seeds.

    Attributes:
        mean: mean over the seeds (NaN values left out).
        std: sample standard deviation (``ddof=1``; 0 for a single seed).
        n: how many seeds had a value (NaN values left out).
        values: the per-seed values, NaN included, in seed order.
    """

    mean: float
    std: float
    n: int
    values: tuple[float, ...]

    @property
    def low(self) -> float:
        """The smallest per-seed value (NaN values left out)."""
        finite = [v for v in self.values if not math.isnan(v)]
        return min(finite) if finite else math.nan

    @property
    def high(self) -> float:
        """The largest per-seed value (NaN values left out)."""
        finite = [v for v in self.values if not math.isnan(v)]
        return max(finite) if finite else math.nan

    def format(self, spec: str = "{:.3g}", *, unit: str = "", percent: bool = False, count: bool = False) -> str:
        """``"mean ± std UNIT"``, or the value alone for a single seed; ``"n/a"`` for none.

        Args:
            spec: format of each number (``"{:.1f}"``, ...); with ``percent``, of the percentage.
            unit: written after the numbers (``" s"``, ``"x"``).
            percent: show fractions as percentages (``0.25`` -> ``"25.0 %"``; ``spec`` default ``"{:.1f}"``).
            count: add the number of seeds, ``" (3 seeds)"``.
        """
        if self.n == 0:
            return "n/a"
        if percent:
            scale, unit = 100.0, " %"
            spec = "{:.1f}" if spec == "{:.3g}" else spec
        else:
            scale = 1.0
        seeds = f" ({self.n} seed{'s' if self.n > 1 else ''})" if count else ""
        if self.n == 1:
            return f"{spec.format(scale * self.mean)}{unit}{seeds}"
        return f"{spec.format(scale * self.mean)} ± {spec.format(scale * self.std)}{unit}{seeds}"

    def to_dict(self) -> dict[str, float | int | list[float]]:
        """JSON-ready: ``mean``, ``std``, ``n`` and the per-seed ``values``."""
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Spread:
        """The inverse of :meth:`to_dict` (e.g. a spread read back from ``metrics.json``)."""
        return spread(data["values"])  # type: ignore[arg-type]


def spread(values: Iterable[float]) -> Spread:
    """Mean and sample standard deviation of per-seed values (NaN values are kept but not counted).

    Raises:
        ConfigError: a value that is not a real number.
    """
    values = tuple(values)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"spread needs real numbers, got {v!r}")
    values = tuple(float(v) for v in values)
    finite = [v for v in values if not math.isnan(v)]
    n = len(finite)
    if n == 0:
        return Spread(math.nan, math.nan, 0, values)
    mean = sum(finite) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else 0.0
    return Spread(mean, std, n, values)


def spread_by(per_seed: Sequence[Mapping[Hashable, float]]) -> dict[Hashable, Spread]:
    """Per key, the spread over seeds of a curve measured once per seed (e.g. accuracy by depth).

    Args:
        per_seed: one mapping per seed, key -> value; a key missing from a seed counts as NaN there.

    Returns:
        key -> :class:`Spread`, keys in sorted order when they sort, else in first-seen order.

    Example:
        >>> curves = spread_by([{2: 0.9, 3: 0.5}, {2: 0.7, 3: 0.5}])
        >>> round(curves[2].mean, 3), curves[3].std
        (0.8, 0.0)
    """
    keys: list[Hashable] = []
    for curve in per_seed:
        keys += [k for k in curve if k not in keys]
    try:
        keys = sorted(keys)  # type: ignore[type-var]
    except TypeError:
        pass
    return {k: spread([curve.get(k, math.nan) for curve in per_seed]) for k in keys}


def plot_spreads(
    values: Mapping[str, Spread],
    path: str | Path,
    *,
    ylabel: str,
    title: str = "",
    logy: bool = False,
) -> Path:
    """Bars of the means, error bars of one standard deviation and a dot per seed; writes a PNG.

    Args:
        values: bar label -> :class:`Spread` (e.g. training time per regime over seeds).
        path: output PNG.
        ylabel: what the values are.
        title: plot title.
        logy: logarithmic y axis (e.g. convergence times, thesis Fig. 3.6).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 1.3 * len(values) + 2), 4), dpi=110)
    ax = fig.subplots()
    labels = list(values)
    for i, label in enumerate(labels):
        s = values[label]
        if s.n == 0:
            continue
        ax.bar(i, s.mean, color=f"C{i % 10}", alpha=0.6, yerr=s.std if s.n > 1 else None, capsize=4)
        seeds = [v for v in s.values if not math.isnan(v)]
        offsets = [0.0] if len(seeds) == 1 else [-0.2 + 0.4 * j / (len(seeds) - 1) for j in range(len(seeds))]
        ax.scatter([i + o for o in offsets], seeds, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(labels)), labels, rotation=15, ha="right", fontsize=8)
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)
