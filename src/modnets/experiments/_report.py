"""Experiment reports: a markdown report, a metrics JSON and the figures, in one run folder."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Report", "markdown_table", "percent"]


def percent(x: float | None, digits: int = 1) -> str:
    """``0.4567`` -> ``"45.7 %"``; ``None`` or NaN -> ``"n/a"``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.{digits}f} %"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


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
    """

    name: str
    title: str
    summary: str
    headline: str
    sections: list[tuple[str, str]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        parts = [f"# {self.title}", "", self.summary, "", self.headline, ""]
        for heading, body in self.sections:
            parts += [f"## {heading}", "", body.strip(), ""]
        if self.figures:
            parts += ["## Figures", ""] + [f"![{f}]({f})" for f in self.figures] + [""]
        return "\n".join(parts)

    def write(self, directory: str | Path) -> Path:
        """Write ``report.md`` and ``metrics.json`` into ``directory``; returns the report path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "metrics.json").write_text(json.dumps(self.metrics, indent=2, sort_keys=True) + "\n")
        path = directory / "report.md"
        path.write_text(self.to_markdown())
        return path
