"""Reports as one self-contained HTML page: the markdown rendered, its figures embedded as data URIs.

A run folder holds ``report.md`` and the PNG files it shows; ``report.html`` is the same report as a page that
opens in a browser on its own, every image the report references from its folder inlined as
``data:image/png;base64,...``. The page has a small style sheet and no JavaScript.

The renderer covers the markdown that reports are written in, not all of CommonMark:

- blocks: ATX headings (``#`` to ``######``), paragraphs, pipe tables with a delimiter row (``:---:``
  alignment), bullet (``-``, ``*``, ``+``) and numbered lists, nested by indentation, and fenced code;
- inline: code spans, ``**bold**``, ``*italic*``, links ``[text](href)``, images ``![alt](src)`` and
  backslash escapes.

Everything else is text. All text is HTML-escaped, and a link or image whose address has a scheme other
than http(s) or mailto (``javascript:``, ...) is shown as plain text.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IMAGE_TYPES", "html_page", "markdown_to_html", "write_html"]

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".svg": "image/svg+xml"}
"""File suffix -> media type of the images that :func:`html_page` embeds."""

_CSS = """\
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0; }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem; }
h1, h2, h3 { line-height: 1.25; margin: 1.6em 0 0.6em; }
h1 { font-size: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.3em; }
h2 { font-size: 1.4em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
code, pre { font: 0.9em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f6f8fa; }
code { padding: 0.1em 0.3em; border-radius: 4px; }
pre { padding: 0.8em; overflow-x: auto; border-radius: 6px; }
pre code { padding: 0; background: none; }
.table { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.95em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1.2em 0; }
figcaption { color: #59636e; font-size: 0.9em; }
img { max-width: 100%; height: auto; }
"""

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ITEM = re.compile(r"^( *)([-*+]|\d{1,9}[.)])[ \t]+(.*)$")
_DELIMITER_CELL = re.compile(r"^:?-+:?$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_SAFE_SCHEMES = {"http", "https", "mailto"}
_MAX_NESTING = 16  # lists in lists

_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+)(?P<ctext>.+?)(?<!`)(?P=ticks)(?!`))"
    r"|(?P<escape>\\(?P<echar>[\\`*_{}\[\]()#+\-.!|<>~]))"
    r"|(?P<image>!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]*)(?:\s+\"(?P<ititle>[^\"]*)\")?\))"
    r"|(?P<link>\[(?P<text>(?:\\.|[^\[\]\\])*)\]\((?P<href>[^)\s]*)(?:\s+\"(?P<ltitle>[^\"]*)\")?\))"
    r"|(?P<strong>\*\*(?=\S)(?P<stext>.+?)(?<=\S)\*\*)"
    r"|(?P<em>\*(?=[^\s*])(?P<etext>.+?)(?<=[^\s*])\*)",
    re.DOTALL,
)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _safe_address(address: str, *, image: bool = False) -> bool:
    """Whether ``address`` may appear as a link or image: relative, an anchor, http(s) or mailto, and for an
    image also an image data URI (which a browser shows without running anything in it).

    The scheme is read as a browser reads it, after dropping control characters and spaces (``\\x01java
    script:`` is ``javascript:``).
    """
    address = re.sub(r"[\x00-\x20\x7f]", "", address)
    match = _SCHEME.match(address)
    return (match is None or match.group(1).lower() in _SAFE_SCHEMES
            or (image and address.lower().startswith("data:image/")))


@dataclass(frozen=True)
class _Addresses:
    """How image sources and link targets of the markdown become attributes of the page."""

    image: Callable[[str], str]
    link: Callable[[str], str]


_AS_WRITTEN = _Addresses(image=lambda src: src, link=lambda href: href)


def _inline(text: str, addresses: _Addresses) -> str:
    """The HTML of one block's inline markdown (code spans, emphasis, links, images, escapes)."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(_escape(text[pos:m.start()]))
        pos = m.end()
        if m.group("code") is not None:
            code = m.group("ctext")
            if code.startswith(" ") and code.endswith(" ") and code.strip():
                code = code[1:-1]  # one space each side lets a code span start or end with a backtick
            out.append(f"<code>{_escape(code)}</code>")
        elif m.group("escape") is not None:
            out.append(_escape(m.group("echar")))
        elif m.group("image") is not None:
            src = m.group("src")
            if not _safe_address(src, image=True):
                out.append(_escape(m.group(0)))
                continue
            title = m.group("ititle")
            out.append(f'<img src="{_escape(addresses.image(src))}" alt="{_escape(m.group("alt"))}"'
                       + (f' title="{_escape(title)}"' if title is not None else "") + ">")
        elif m.group("link") is not None:
            href = m.group("href")
            label = _inline(m.group("text"), addresses)
            if not _safe_address(href):
                out.append(label)
                continue
            title = m.group("ltitle")
            out.append(f'<a href="{_escape(addresses.link(href))}"'
                       + (f' title="{_escape(title)}"' if title is not None else "") + f">{label}</a>")
        elif m.group("strong") is not None:
            out.append(f"<strong>{_inline(m.group('stext'), addresses)}</strong>")
        else:
            out.append(f"<em>{_inline(m.group('etext'), addresses)}</em>")
    out.append(_escape(text[pos:]))
    return "".join(out)


def _cells(line: str) -> list[str]:
    """The cells of a table row, split at each ``|`` that is not escaped, outer pipes dropped.

    As in GitHub markdown, the row is split before inline markup is read, so a pipe in a cell, also one in a
    code span, is written ``\\|`` (as :func:`~modnets.experiments.markdown_table` does).
    """
    cells = [c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", line.strip())]
    if line.strip().startswith("|"):
        cells = cells[1:]
    if len(cells) > 1 and not cells[-1] and re.search(r"(?<!\\)\|$", line.strip()):
        cells = cells[:-1]
    return cells


def _alignments(line: str) -> list[str] | None:
    """The column alignments of a table's delimiter row (``| --- | :---: |``), or None for another line."""
    if "-" not in line or "|" not in line:
        return None
    cells = _cells(line)
    if not cells or not all(_DELIMITER_CELL.match(c) for c in cells):
        return None
    return ["center" if c.startswith(":") and c.endswith(":") else "right" if c.endswith(":")
            else "left" if c.startswith(":") else "" for c in cells]


def _is_table_start(lines: list[str], i: int) -> bool:
    if "|" not in lines[i] or i + 1 >= len(lines):
        return False
    align = _alignments(lines[i + 1])
    return align is not None and len(align) == len(_cells(lines[i]))


def _table(header: list[str], align: list[str], rows: list[list[str]], addresses: _Addresses) -> str:
    def row(cells: list[str], tag: str) -> str:
        cells = (cells + [""] * len(align))[:len(align)]  # as in GitHub markdown: pad short rows, cut long ones
        return "<tr>" + "".join(
            f"<{tag}" + (f' style="text-align: {a}"' if a else "") + f">{_inline(c, addresses)}</{tag}>"
            for c, a in zip(cells, align, strict=True)) + "</tr>"

    body = "\n".join(row(r, "td") for r in rows)
    return (f'<div class="table"><table>\n<thead>\n{row(header, "th")}\n</thead>\n'
            + (f"<tbody>\n{body}\n</tbody>\n" if rows else "") + "</table></div>")


def _figure(line: str, addresses: _Addresses) -> str | None:
    """A line that is one image alone, as a ``<figure>`` captioned by its alt text; None for another line."""
    m = _INLINE.fullmatch(line)
    if m is None or m.group("image") is None or not _safe_address(m.group("src"), image=True):
        return None
    caption = m.group("alt")
    return (f"<figure>{_inline(line, addresses)}"
            + (f"<figcaption>{_escape(caption)}</figcaption>" if caption else "") + "</figure>")


def _paragraph(lines: list[str], addresses: _Addresses) -> str:
    """A paragraph; one whose every line is an image alone (a report's figures) is a figure per line."""
    lines = [line.strip() for line in lines]
    figures = [_figure(line, addresses) for line in lines]
    if all(f is not None for f in figures):
        return "\n".join(figures)
    return "<p>" + _inline("\n".join(lines), addresses) + "</p>"


def _interrupts(lines: list[str], i: int) -> bool:
    """Whether line ``i`` starts a block that ends the paragraph before it."""
    line = lines[i]
    return (not line.strip() or _HEADING.match(line) is not None or _FENCE.match(line) is not None
            or _is_table_start(lines, i) or re.match(r"^ {0,3}[-*+][ \t]+\S", line) is not None)


def _blocks(lines: list[str], addresses: _Addresses, depth: int = 0) -> list[str]:
    """The HTML blocks of markdown ``lines``; list items are rendered by a call on their own lines.

    ``depth`` counts the lists around ``lines``; below :data:`_MAX_NESTING` of them a list item is text, so
    that no input reaches the recursion limit.
    """
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif (m := _HEADING.match(line)) is not None:
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2) or '', addresses)}</h{level}>")
            i += 1
        elif (m := _FENCE.match(line)) is not None:
            fence, code, i = m.group(1), [], i + 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                code.append(lines[i])
                i += 1
            i += 1  # the closing fence (or the end of the text)
            out.append("<pre><code>" + _escape("\n".join(code)) + "</code></pre>")
        elif _is_table_start(lines, i):
            header, align, rows, i = _cells(line), _alignments(lines[i + 1]), [], i + 2
            while i < len(lines) and lines[i].strip() and "|" in lines[i]:
                rows.append(_cells(lines[i]))
                i += 1
            out.append(_table(header, align, rows, addresses))
        elif (m := _ITEM.match(line)) is not None and len(m.group(1)) <= 3 and depth < _MAX_NESTING:
            html_list, i = _list(lines, i, addresses, depth)
            out.append(html_list)
        else:
            para, i = [line], i + 1
            while i < len(lines) and not _interrupts(lines, i):
                para.append(lines[i])
                i += 1
            out.append(_paragraph(para, addresses))
    return out


def _list(lines: list[str], i: int, addresses: _Addresses, depth: int) -> tuple[str, int]:
    """The list that starts at line ``i`` and the index of the line after it."""
    first = _ITEM.match(lines[i])
    ordered = first.group(2)[0].isdigit()
    items: list[list[str]] = []
    loose = False
    while i < len(lines):
        m = _ITEM.match(lines[i])
        if m is None or len(m.group(1)) > 3 or m.group(2)[0].isdigit() != ordered:
            break
        indent = len(m.group(1)) + len(m.group(2)) + 1
        item, i = [m.group(3)], i + 1
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                # a blank line continues the item only when indented content follows it
                nxt = next((j for j in range(i, len(lines)) if lines[j].strip()), None)
                if nxt is None or len(lines[nxt]) - len(lines[nxt].lstrip(" ")) < min(indent, 2):
                    break
                loose = True
                item.append("")
            elif len(line) - len(line.lstrip(" ")) >= 2:
                item.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
            elif _ITEM.match(line) or _interrupts(lines, i):
                break
            else:
                item.append(line)  # a lazy continuation line of the item's paragraph
            i += 1
        items.append(item)
        nxt = i
        while nxt < len(lines) and not lines[nxt].strip():
            nxt += 1
        if nxt > i and nxt < len(lines) and (m := _ITEM.match(lines[nxt])) and len(m.group(1)) <= 3 \
                and m.group(2)[0].isdigit() == ordered:
            loose, i = True, nxt  # items apart by blank lines: a loose list, whose items hold paragraphs
    start = first.group(2)[:-1]
    tag = "ol" if ordered else "ul"
    opening = f'<ol start="{int(start)}">' if ordered and int(start) != 1 else f"<{tag}>"
    rendered = []
    for item in items:
        blocks = _blocks(item, addresses, depth + 1)
        if not loose:  # a tight list's items hold their text without paragraphs
            blocks = [b[3:-4] if b.startswith("<p>") else b for b in blocks]
        rendered.append("<li>" + "\n".join(blocks) + "</li>")
    return opening + "\n" + "\n".join(rendered) + f"\n</{tag}>", i


def markdown_to_html(text: str, *, image_src: Callable[[str], str] | None = None,
                     link_href: Callable[[str], str] | None = None) -> str:
    """The HTML (a fragment, without ``<html>`` or ``<body>``) of the markdown ``text``.

    Args:
        text: markdown in the subset of this module's docstring.
        image_src: maps the address of each image to its ``src`` (by default, as written).
        link_href: maps the target of each link to its ``href`` (by default, as written).

    Example:
        >>> markdown_to_html("Loss **fell** for `<x>`; see [the plot](loss.png).")
        '<p>Loss <strong>fell</strong> for <code>&lt;x&gt;</code>; see <a href="loss.png">the plot</a>.</p>'
    """
    addresses = _Addresses(image=image_src or _AS_WRITTEN.image, link=link_href or _AS_WRITTEN.link)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4).split("\n")
    return "\n".join(_blocks(lines, addresses))


def _inside(directory: Path, address: str) -> Path | None:
    """The file that the relative ``address`` names inside ``directory``, or None (absolute, outside, absent)."""
    if not address or _SCHEME.match(address) or address.startswith(("/", "#")):
        return None
    root = directory.resolve()
    path = (root / address.split("#")[0].split("?")[0]).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def _embedded(directory: Path) -> Callable[[str], str]:
    """Image addresses -> data URIs of the files they name in ``directory``; others are kept as written."""
    def src(address: str) -> str:
        path = _inside(directory, address)
        kind = IMAGE_TYPES.get(path.suffix.lower()) if path is not None else None
        if kind is None:
            return address
        return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")

    return src


def _html_links(directory: Path) -> Callable[[str], str]:
    """Link targets ``X.md`` -> ``X.html`` where ``directory`` holds that page (a sub-report's page)."""
    def href(address: str) -> str:
        path = _inside(directory, address)
        if path is not None and path.suffix == ".md" and path.with_suffix(".html").is_file():
            return address[: -len(".md")] + ".html" if address.endswith(".md") else address
        return address

    return href


def _plain(markdown: str) -> str:
    """Text of one line of inline markdown, its markers removed (for the page title)."""
    return re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown).replace("`", "").replace("**", "").strip()


def html_page(markdown: str, *, directory: str | Path, title: str | None = None) -> str:
    """A self-contained HTML page of the markdown report ``markdown`` whose files are in ``directory``.

    Every image that names a file in ``directory`` (a relative address that stays inside it) with a suffix of
    :data:`IMAGE_TYPES` is embedded as a base64 data URI; other images keep their address. A link to a
    markdown file in ``directory`` whose ``.html`` page sits next to it points to that page.

    Args:
        markdown: the report, as in ``report.md``.
        directory: the run folder, against which image and link addresses are resolved.
        title: the page title; by default the text of the first ``#`` heading (or ``"report"``).

    Returns:
        The page, starting with ``<!DOCTYPE html>``.
    """
    directory = Path(directory)
    if title is None:
        first = next((m for line in markdown.splitlines() if (m := _HEADING.match(line)) and len(m.group(1)) == 1),
                     None)
        title = _plain(first.group(2) or "") if first is not None else ""
    body = markdown_to_html(markdown, image_src=_embedded(directory), link_href=_html_links(directory))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_escape(title or 'report')}</title>\n<style>\n{_CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def write_html(markdown: str, path: str | Path, *, title: str | None = None) -> Path:
    """Write :func:`html_page` of ``markdown`` to ``path`` (``report.html``), resolving against its folder.

    Args:
        markdown: the report, as in ``report.md`` next to ``path``.
        path: the page to write; images are looked up in its folder.
        title: the page title (see :func:`html_page`).

    Returns:
        ``path``.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> page = write_html("# Run\\n\\nloss fell", run / "report.html")
        >>> "<p>loss fell</p>" in page.read_text(encoding="utf-8")
        True
    """
    path = Path(path)
    path.write_text(html_page(markdown, directory=path.parent, title=title), encoding="utf-8")
    return path
