"""Experiment reports: a markdown report, a metrics JSON and the figures, in one run folder.

``report.html`` next to ``report.md`` is the same report as one self-contained page, its figures embedded
(:func:`write_html`), which opens in a browser without the rest of the folder.

``metrics.json`` holds the run's whole config under ``"config"``; :func:`read_run_config` reads it back (or
a plain config file), which is how ``modnets run NAME --config RUN/metrics.json`` repeats a run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config import Config, read_config_file
from ._html import write_html

__all__ = ["Report", "markdown_table", "percent", "read_run_config", "spread_text", "write_html"]


def percent(x: float | None, digits: int = 1) -> str:
    """``0.4567`` -> ``"45.7 %"``; ``None`` or NaN -> ``"n/a"``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.{digits}f} %"


def spread_text(d: Mapping[str, Any], spec: str = "{:.3g}", *, unit: str = "", percent: bool = False) -> str:
    """A spread over seeds as ``metrics.json`` holds it (``Spread.to_dict()``), formatted by ``Spread.format``."""
    from ..analysis import Spread

    return Spread.from_dict(d).format(spec, unit=unit, percent=percent)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; a ``|`` in a cell is escaped so that it stays in its cell.

    Example:
        >>> print(markdown_table(["norm", "value"], [("||x||", 2)]))
        | norm | value |
        | --- | --- |
        | \\|\\|x\\|\\| | 2 |
    """
    def row(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([row(headers), "| " + " | ".join("---" for _ in headers) + " |", *map(row, rows)])


@dataclass
class Report:
    """What an experiment measured.

    Attributes:
        name: experiment name (``nmn``, ...).
        title: report title.
        summary: a paragraph on what was run and what came out, honest about differences to the paper.
        headline: the main markdown table (printed by the CLI).
        sections: (heading, markdown body) pairs.
        metrics: JSON-serialisable numbers, written to ``metrics.json``.
        figures: PNG file names relative to the run folder.
        config: the settings of the run, written to ``metrics.json`` under ``"config"``.
    """

    name: str
    title: str
    summary: str
    headline: str
    sections: list[tuple[str, str]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    config: Config | None = None

    def metrics_json(self) -> dict[str, Any]:
        """What ``metrics.json`` holds: :attr:`metrics`, and the config under ``"config"``."""
        return self.metrics if self.config is None else {**self.metrics, "config": self.config.to_dict()}

    def to_markdown(self) -> str:
        parts = [f"# {self.title}", "", self.summary, "", self.headline, ""]
        for heading, body in self.sections:
            parts += [f"## {heading}", "", body.strip(), ""]
        if self.figures:
            parts += ["## Figures", ""] + [f"![{f}]({f})" for f in self.figures] + [""]
        return "\n".join(parts)

    def write(self, directory: str | Path) -> Path:
        """Write ``report.md``, ``report.html`` and ``metrics.json`` into ``directory``; returns the report path.

        ``report.html`` embeds the :attr:`figures`, which must be in ``directory`` already (a figure that is
        not keeps its file name as the image address).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "metrics.json").write_text(json.dumps(self.metrics_json(), indent=2, sort_keys=True) + "\n")
        path = directory / "report.md"
        markdown = self.to_markdown()
        path.write_text(markdown)
        write_html(markdown, directory / "report.html", title=self.title)
        return path


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The config fields in a JSON or YAML config file, or in the ``metrics.json`` of a run.

    A file whose top level has a ``"config"`` mapping is taken for a run's ``metrics.json`` and gives that
    mapping (the run's whole config); any other file gives its top level (some or all of the fields).

    Raises:
        ConfigError: the file cannot be read, does not parse or does not hold a mapping.
    """
    data = read_config_file(path)
    config = data.get("config")
    return dict(config) if isinstance(config, Mapping) else data
