import base64
import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from modnets.experiments import Report, markdown_table
from modnets.experiments._html import html_page, markdown_to_html, write_html

_VOID = {"img", "meta", "br", "hr", "link", "input"}


class _Page(HTMLParser):
    """Collects the tags of a page, and fails on a closing tag that does not close the innermost open one."""

    def __init__(self):
        super().__init__()
        self.open, self.tags, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in _VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)

    def error(self, message):  # pragma: no cover - only Python < 3.10 calls it
        raise AssertionError(message)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.open == [], f"tags left open: {parser.open}"
    return parser


def _png(path):
    fig = Figure(figsize=(1, 1), dpi=20)
    fig.add_subplot().plot([0, 1], [1, 0])
    fig.savefig(path, format="png")
    return path.read_bytes()


@pytest.fixture
def report():
    table = markdown_table(["model", "accuracy"], [("modular", "91.0 %"), ("monolithic", "<script>x</script>"),
                                                  ("a | b", "`c | d`")])
    return Report(
        name="tiny", title="Tiny <script>alert(1)</script> run", summary="Trained `Router` for **3** steps & stopped.",
        headline=table,
        sections=[("Notes", "- first <b>point</b>\n- second with `x < y`\n  and a continuation line"),
                  ("Links", "See [the paper](https://example.org/p?a=1&b=2) and [bad](javascript:alert(1)).")],
        figures=["loss.png"],
    )


def test_report_write_embeds_figures_and_escapes_text(tmp_path, report):
    png = _png(tmp_path / "loss.png")
    report.write(tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    parsed = _parse(page)
    tags = [t for t, _ in parsed.tags]
    assert tags.count("table") == 1
    assert tags.count("tr") == 4  # the header and three rows
    assert tags.count("th") == 2 and tags.count("td") == 6
    assert tags.count("h1") == 1 and tags.count("h2") == 3  # Notes, Links, Figures
    assert tags.count("ul") == 1 and tags.count("li") == 2
    assert tags.count("script") == 0 and "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>" not in page and "&lt;b&gt;point&lt;/b&gt;" in page
    assert "<code>Router</code>" in page and "<strong>3</strong>" in page and "&amp; stopped" in page
    assert "<code>x &lt; y</code>\nand a continuation line" in page
    assert "<td>a | b</td>" in page and "<td><code>c | d</code></td>" in page  # a pipe in code stays in its cell
    assert 'href="https://example.org/p?a=1&amp;b=2"' in page
    assert "javascript:" not in "".join(str(a) for _, a in parsed.tags) and "bad" in "".join(parsed.text)
    (img,) = [a for t, a in parsed.tags if t == "img"]
    prefix = "data:image/png;base64,"
    assert img["src"].startswith(prefix) and img["alt"] == "loss.png"
    assert base64.b64decode(img["src"][len(prefix):], validate=True) == png
    title = "".join(parsed.text).split("\n")
    assert "Tiny <script>alert(1)</script> run" in title  # the title, escaped in the page, reads as written
    assert (tmp_path / "report.md").read_text() == report.to_markdown()


def test_images_outside_the_folder_or_not_images_keep_their_address(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _png(tmp_path / "outside.png")
    (run / "notes.txt").write_text("text")
    page = html_page("![a](../outside.png)\n![b](missing.png)\n![c](notes.txt)\n![d](/etc/hosts)", directory=run)
    srcs = [a["src"] for t, a in _parse(page).tags if t == "img"]
    assert srcs == ["../outside.png", "missing.png", "notes.txt", "/etc/hosts"]


def test_link_to_a_sub_report_points_to_its_page(tmp_path):
    (tmp_path / "nmn").mkdir()
    (tmp_path / "nmn" / "report.md").write_text("# nmn")
    (tmp_path / "nmn" / "report.html").write_text("<p>nmn</p>")
    (tmp_path / "imn").mkdir()
    (tmp_path / "imn" / "report.md").write_text("# imn")
    path = write_html("# All\n\n[nmn](nmn/report.md) and [imn](imn/report.md)", tmp_path / "report.html")
    hrefs = [a["href"] for t, a in _parse(path.read_text(encoding="utf-8")).tags if t == "a"]
    assert hrefs == ["nmn/report.html", "imn/report.md"]  # imn has no page: the link stays on the markdown


@pytest.mark.parametrize(("markdown", "expected"), [
    ("## A *b* c\n", "<h2>A <em>b</em> c</h2>"),
    ("# C# #", "<h1>C#</h1>"),
    ("#tag", "<p>#tag</p>"),
    ("snake_case_name and 2 * 3 * 4", "<p>snake_case_name and 2 * 3 * 4</p>"),
    (r"\*not em\* and \`", "<p>*not em* and `</p>"),
    ("`` a`b ``", "<p><code>a`b</code></p>"),
    ("a\nb\n\nc", "<p>a\nb</p>\n<p>c</p>"),
    ("1. one\n2. two", "<ol>\n<li>one</li>\n<li>two</li>\n</ol>"),
    ("3. three", '<ol start="3">\n<li>three</li>\n</ol>'),
    ("- a\n  - b\n- c", "<ul>\n<li>a\n<ul>\n<li>b</li>\n</ul></li>\n<li>c</li>\n</ul>"),
    ("- a\n\n- b", "<ul>\n<li><p>a</p></li>\n<li><p>b</p></li>\n</ul>"),
    ("text\n- item", "<p>text</p>\n<ul>\n<li>item</li>\n</ul>"),
    ("```\n<x> & y\n```", "<pre><code>&lt;x&gt; &amp; y</code></pre>"),
    ("[x](JavaScript:alert(1))", "<p>x)</p>"),
    ("![x](javascript:alert(1))", "<p>![x](javascript:alert(1))</p>"),
    ("[x](\x01java\x00script:alert)", "<p>x</p>"),
    ("[x](data:text/html,hi) ![y](data:image/png;base64,AAAA)",
     '<p>x <img src="data:image/png;base64,AAAA" alt="y"></p>'),
    ("![plot](p.png)", '<figure><img src="p.png" alt="plot"><figcaption>plot</figcaption></figure>'),
    ("|||a|| x", "<p>|||a|| x</p>"),
    ("| a | b |\n| :-- | :-: |\n| 1 |", '<div class="table"><table>\n<thead>\n<tr><th style="text-align: left">a</th>'
     '<th style="text-align: center">b</th></tr>\n</thead>\n<tbody>\n<tr><td style="text-align: left">1</td>'
     '<td style="text-align: center"></td></tr>\n</tbody>\n</table></div>'),
])
def test_markdown_subset(markdown, expected):
    assert markdown_to_html(markdown) == expected
    _parse(markdown_to_html(markdown))


def test_report_with_subheadings_and_nested_markup_is_well_formed(tmp_path):
    md = Report(name="x", title="T", summary="s", headline=markdown_table(["a"], [(1,)]),
                sections=[("Images", "### sub\n\ntext **bold `code` inside**")], figures=["f.png"]).to_markdown()
    page = html_page(md, directory=tmp_path)
    tags = [t for t, _ in _parse(page).tags]
    assert "h3" in tags and re.search(r"<strong>bold <code>code</code> inside</strong>", page)


def test_deeply_nested_lists_stop_nesting_instead_of_recursing():
    page = markdown_to_html("- " * 3000 + "x")
    parsed = _parse(page)
    assert 1 <= [t for t, _ in parsed.tags].count("ul") <= 20 and "x" in "".join(parsed.text)


_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "div", "table", "thead", "tbody", "tr", "th", "td", "ul", "ol",
         "li", "pre", "code", "strong", "em", "a", "img", "figure", "figcaption"}


_PIECES = [*"ab <>&\"'|-*#`[]()!:\\\n 1.\t_", "javascript:", "](", "| --- |", "**", "\n- ", "\n  - ", "\n\n"]
_LINES = ["# h", "- item", "  - sub", "1. one", "| a | b |", "| --- | --- |", "| 1 | 2 |", "", "text", "`co|de`",
          "**b**", "![i](i.png)", "[l](javascript:x)", "<script>", "```"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=60).map("".join)
       | st.lists(st.sampled_from(_LINES), max_size=12).map("\n".join))
def test_any_text_gives_well_formed_html_with_only_the_renderers_tags(text):
    parsed = _parse(markdown_to_html(text))
    assert {t for t, _ in parsed.tags} <= _TAGS
    for _, attrs in parsed.tags:
        assert not any(v and v.strip().lower().startswith("javascript:") for v in attrs.values())
