"""One Markdown table writer: each cell renders as one literal cell, whatever its text."""

from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from prodcls_pipeline.core.tables import Markdown, bold, code, escape, markdown_table

HOSTILE = [
    "a|b",
    "<script>alert(1)</script>",
    "*bold* and __strong__",
    "first line\nsecond line",
    "[link](http://example.com) ![img](x.png)",
    "`code` ~~struck~~",
    "AT&T &amp; back\\slash \\|",
    "<img src=x onerror=alert(1)>",
    "_x_ __init__ snake_case_name a__b __c",
    "_ leading and trailing _",
]


class _Cells(HTMLParser):
    """The text of every table cell, row by row, and every tag the page holds."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.tags: set[str] = set()
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


def rendered(markdown: str) -> _Cells:
    """The table as GitHub-flavoured Markdown renders it (CommonMark, tables, strikethrough)."""
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)
    cells = _Cells()
    cells.feed(html)
    return cells


@pytest.mark.parametrize("text", HOSTILE)
def test_a_hostile_cell_renders_as_one_literal_cell(text: str) -> None:
    cells = rendered(markdown_table(["label", "count"], [[text, 3]]))

    assert cells.rows == [["label", "count"], [text.replace("\n", " "), "3"]]
    assert cells.tags <= {"table", "thead", "tbody", "tr", "th", "td"}


def test_every_cell_of_every_row_is_escaped_headers_included() -> None:
    table = markdown_table(["*a*", "b|c"], [HOSTILE[:2], HOSTILE[2:4]])

    assert table.splitlines()[:2] == ["| \\*a\\* | b\\|c |", "| --- | --- |"]
    assert rendered(table).rows[1:] == [HOSTILE[:2], [HOSTILE[2], "first line second line"]]


def test_a_list_cell_shows_its_items_separated_by_commas() -> None:
    cells = rendered(markdown_table(["labels"], [[["x|y", "<b>"]]]))

    assert cells.rows[1] == ["x|y, <b>"]


def test_markdown_cells_are_kept_and_bold_and_code_escape_their_text() -> None:
    table = markdown_table(
        ["variant", "file"],
        [[Markdown(f"{bold('int8 <fast>')} (deployed)"), code("a|b`c`<i>")]],
    )
    cells = rendered(table)

    assert cells.rows[1] == ["int8 <fast> (deployed)", "a|b`c`<i>"]
    assert cells.tags == {"table", "thead", "tbody", "tr", "th", "td", "strong", "code"}


def test_escape_leaves_plain_text_numbers_and_identifiers_alone() -> None:
    plain = "Granny Smith 0.8612 +1.5% (12) images_per_class efficientnet_lite0"
    assert escape(plain) == plain
    assert escape("_x_ a_b") == "\\_x\\_ a_b"
    assert isinstance(escape(3), Markdown) and escape(3) == "3"


@pytest.mark.parametrize("text", [" Banana  ", "Kiwi ", " Kiwi", "` x `", "  "])
def test_code_keeps_the_spaces_around_its_text(text: str) -> None:
    cells = rendered(markdown_table(["given as"], [[code(text)]]))

    assert cells.rows[1] == [text]
