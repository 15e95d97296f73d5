"""Each subpackage's docstring lists exactly the names its ``__init__.py`` re-exports, one line each."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import modnets

SUBPACKAGES = (
    "types", "modules", "compose", "routing", "agents", "data", "models", "train", "plan", "analysis", "hub",
    "experiments", "bench",
)

_ENTRY = re.compile(r"^- ``(\w+)``: (\S.*)$")


def exported_names(package: str) -> list[str]:
    """The names the package's ``__init__.py`` re-exports as ``from .x import Name as Name``."""
    path = Path(modnets.__file__).parent / package / "__init__.py"
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            names += [alias.name for alias in node.names if alias.asname == alias.name]
    return names


def listed_names(docstring: str) -> list[str]:
    """The names of the ``- ``Name``: description`` lines after ``Public names:``."""
    _, _, listing = docstring.partition("\nPublic names:\n")
    assert listing, "the docstring has no 'Public names:' section"
    return [m.group(1) for line in listing.splitlines() if (m := _ENTRY.match(line))]


def test_every_subpackage_is_covered():
    root = Path(modnets.__file__).parent
    found = {p.parent.name for p in root.glob("*/__init__.py")}
    assert found == set(SUBPACKAGES)


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_docstring_lists_exactly_the_exports(package):
    module = importlib.import_module(f"modnets.{package}")
    exported = exported_names(package)
    assert exported, f"modnets.{package} re-exports nothing"
    for name in exported:
        assert hasattr(module, name)
    listed = listed_names(module.__doc__)
    assert len(listed) == len(set(listed)), f"modnets.{package}: a name is listed twice"
    assert set(listed) - set(exported) == set(), f"modnets.{package} lists names it does not export"
    assert set(exported) - set(listed) == set(), f"modnets.{package} exports names its docstring does not list"


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_docstring_opens_with_a_paragraph(package):
    doc = importlib.import_module(f"modnets.{package}").__doc__
    head = doc.partition("\nPublic names:\n")[0].strip()
    assert head and not head.startswith("- ")


def test_help_shows_the_names():
    """``help(modnets.routing)`` shows each public name with its one-line description."""
    import pydoc

    text = pydoc.render_doc(modnets.routing, renderer=pydoc.plaintext)
    assert "- ``Router``: a policy over the M modules of each of L layers." in text
    assert "- ``dispatch``: " in text


_MEMBER = re.compile(r"^\s+- (\w+)\s*$")


@pytest.mark.parametrize("package", [p for p in SUBPACKAGES if p not in ("experiments", "bench")])
def test_reference_page_lists_exactly_the_exports(package):
    """docs/reference/PACKAGE.md names its members explicitly (the ``__init__`` files have no ``__all__``), so
    a name added to a package must be added to its page as well."""
    page = Path(modnets.__file__).parents[2] / "docs" / "reference" / f"{package}.md"
    if not page.exists():
        pytest.skip("no docs/ beside the package (an installed copy)")
    listed = [m.group(1) for line in page.read_text().splitlines() if (m := _MEMBER.match(line))]
    assert sorted(listed) == sorted(exported_names(package)), (
        f"{page.name}: missing {sorted(set(exported_names(package)) - set(listed))}, "
        f"extra {sorted(set(listed) - set(exported_names(package)))}")
