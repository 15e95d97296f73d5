"""The documentation's code runs: every ```python block of docs/**/*.md, page by page.

Each page's blocks run in order in one namespace (a later block may use what an earlier one defined), in a
temporary working folder, with one torch thread. A block preceded by the line ``<!-- skip -->`` is not run
(only for code that needs hardware the test machine may lack, such as a GPU); one preceded by
``<!-- needs: PACKAGE -->`` runs only where that optional package is importable (Ray, for instance).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
SKIP = "<!-- skip -->"
_NEEDS = re.compile(r"<!-- needs: ([A-Za-z_][A-Za-z0-9_.]*) -->")
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def code_blocks(text: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every ```python block of a Markdown page that is not marked ``<!-- skip -->``, nor
    ``<!-- needs: PACKAGE -->`` with PACKAGE not importable here."""
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        marker = before[-1].strip() if before else ""
        if marker == SKIP:
            continue
        needs = _NEEDS.fullmatch(marker)
        if needs and importlib.util.find_spec(needs.group(1).split(".")[0]) is None:
            continue
        blocks.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


PAGES = sorted(p for p in DOCS.rglob("*.md") if code_blocks(p.read_text()))


def test_extraction_honours_skip_marker():
    page = "```python\na = 1\n```\n\n<!-- skip -->\n```python\nraise SystemExit\n```\n```bash\nls\n```\n"
    assert code_blocks(page) == [(1, "a = 1\n")]


def test_extraction_runs_needs_blocks_only_where_the_package_imports():
    page = "<!-- needs: json -->\n```python\na = 1\n```\n<!-- needs: no_such_package_xyz -->\n```python\nb = 2\n```\n"
    assert code_blocks(page) == [(2, "a = 1\n")]


def test_docs_have_code():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert "getting-started.md" in names
    assert any(n.startswith("how-to/") for n in names)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_code_runs(page: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODNETS_HUB", str(tmp_path / "hub"))  # never touch the user's hub
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    try:
        for line, code in code_blocks(page.read_text()):
            try:
                exec(compile(code, f"{page}:{line}", "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"the code block at {page.relative_to(DOCS)}:{line} failed: {e!r}") from e
    finally:
        torch.set_num_threads(threads)


def test_every_page_is_in_the_nav():
    config = (DOCS.parent / "mkdocs.yml").read_text()
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    missing = sorted(p for p in pages if p not in config)
    assert not missing, f"pages missing from mkdocs.yml's nav: {missing}"


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=DOCS.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("page", [DOCS.parent / "README.md", *sorted(DOCS.rglob("*.md"))], ids=lambda p: p.name)
def test_no_section_is_written_twice(page):
    headings = [line.strip() for line in page.read_text().splitlines() if re.match(r"#{2,4} ", line)]
    twice = sorted({h for h in headings if headings.count(h) > 1})
    assert not twice, f"{page.name} repeats the sections {twice}"
