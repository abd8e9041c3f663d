"""An audit report's renderings show every value as written: escaped in HTML and Markdown, never
read as rich markup, and the HTML page needs nothing from outside itself."""

import io
import json
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from prodcls_pipeline.audit.documents import (
    FORMATS,
    Report,
    Section,
    Table,
    cell,
    print_rich,
    render,
    signed,
    to_html,
    to_json,
    to_markdown,
)
from prodcls_pipeline.core.tables import markdown_table

SCRIPT = "<script>alert(1)</script>"
AMPERSAND = "AT&T & co"
QUOTES = 'say "hi" it\'s'
MARKUP = "[bold]x[/bold]"
HOSTILE = [SCRIPT, AMPERSAND, QUOTES, MARKUP, "<img src=x onerror=alert(1)>", "*em* | pipe"]
# The tags and attributes a rendering of `report()` may hold: nothing a value could smuggle in.
HTML_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "pre"}
TABLE_TAGS = {"table", "thead", "tbody", "tr", "th", "td"}


class _Page(HTMLParser):
    """Every tag and attribute of a page, and the text of each paragraph, heading and cell."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[tuple[str, str | None]] = set()
        self.texts: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes |= set(attrs)
        if tag in {"h1", "h2", "h3", "p", "td", "th", "pre", "title"}:
            self._open = tag
            self.texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.texts[-1] += data


def parsed(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def report(values: list[str]) -> Report:
    """A report with `values` in every place a renderer writes text."""
    first = values[0]
    return Report(
        f"Audit {first}",
        [
            Section(
                f"Heading {first}",
                lines=[f"line {value}" for value in values],
                tables=[
                    Table(
                        f"Table {first}",
                        ["label", f"column {first}", "count"],
                        [[value, [value, "x"], 3] for value in values],
                        note=f"note {first}",
                    )
                ],
            )
        ],
    )


def test_cell_shows_each_kind_of_value_the_same_way_everywhere() -> None:
    assert cell(None) == cell("") == cell([]) == "–"
    assert (cell(True), cell(False)) == ("yes", "no")
    assert (cell(0.5), cell(1.0), cell(0.12345)) == ("0.5000", "1.0000", "0.1235")
    assert (cell(0), cell(42)) == ("0", "42")
    assert cell(["a", 1.0, None, False]) == "a, 1.0000, –, no"
    assert cell(("v1", "v2")) == "v1, v2"
    assert cell(SCRIPT) == SCRIPT


def test_signed_shows_a_change_with_its_sign() -> None:
    assert (signed(0.0123), signed(-0.5), signed(0.0)) == ("+0.0123", "-0.5000", "+0.0000")
    assert (signed(2), signed(-3), signed(0)) == ("+2", "-3", "+0")  # counts stay whole
    assert signed(None) == "–"


def test_html_escapes_every_value_and_never_emits_a_raw_tag() -> None:
    page = to_html(report(HOSTILE))

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "AT&amp;T &amp; co" in page
    assert "say &quot;hi&quot; it&#x27;s" in page
    assert "<script" not in page
    assert "<img" not in page
    assert SCRIPT not in page


def test_html_shows_every_value_as_written() -> None:
    page = parsed(to_html(report(HOSTILE)))

    assert page.tags <= HTML_TAGS | TABLE_TAGS
    assert {f"line {value}" for value in HOSTILE} <= set(page.texts)
    assert set(HOSTILE) <= set(page.texts)
    assert {f"{value}, x" for value in HOSTILE} <= set(page.texts)
    assert {f"Audit {SCRIPT}", f"Heading {SCRIPT}", f"Table {SCRIPT}"} <= set(page.texts)
    assert f"column {SCRIPT}" in page.texts
    assert f"note {SCRIPT}" in page.texts


def test_the_html_page_is_self_contained() -> None:
    page = to_html(report([SCRIPT, AMPERSAND, QUOTES, MARKUP]))

    for reference in ("<script", "src=", "href=", "http://", "https://", "@import", "url("):
        assert reference not in page.lower()
    attributes = parsed(page).attributes
    assert attributes <= {("lang", "en"), ("charset", "utf-8"), ("class", "num"), ("class", "note")}


def test_html_marks_numbers_for_right_alignment_but_not_booleans() -> None:
    page = to_html(
        Report("t", [Section("s", tables=[Table("t", ["a", "b", "c"], [[3, 0.5, True]])])])
    )

    assert '<td class="num">3</td><td class="num">0.5000</td><td>yes</td>' in page


def test_html_shows_a_model_card_as_preformatted_escaped_text() -> None:
    card = "# Card\n\n**bold** <b>raw</b> & more"

    page = to_html(Report("t", [Section("Model card", markdown=card)]))

    assert "<pre># Card\n\n**bold** &lt;b&gt;raw&lt;/b&gt; &amp; more</pre>" in page


def test_markdown_escapes_the_same_values() -> None:
    text = to_markdown(report(HOSTILE))

    assert SCRIPT not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "AT&amp;T &amp; co" in text
    assert "\\[bold\\]x\\[/bold\\]" in text


def test_markdown_renders_every_value_as_written() -> None:
    html = MarkdownIt("commonmark").enable(["table"]).render(to_markdown(report(HOSTILE)))
    page = parsed(html)

    assert page.tags <= {"h1", "h2", "h3", "p", "em"} | TABLE_TAGS
    assert {f"line {value}" for value in HOSTILE} <= set(page.texts)
    assert set(HOSTILE) <= set(page.texts)
    assert {f"Audit {SCRIPT}", f"Heading {SCRIPT}", f"Table {SCRIPT}"} <= set(page.texts)
    assert f"note {SCRIPT}" in page.texts


def test_markdown_writes_each_table_with_the_core_table_writer() -> None:
    document = report(HOSTILE)
    table = document.sections[0].tables[0]

    expected = markdown_table(table.columns, [[cell(value) for value in row] for row in table.rows])

    assert expected in to_markdown(document)
    assert '| say "hi" it\'s | say "hi" it\'s, x | 3 |' in expected


def test_markdown_keeps_a_model_card_written_by_prodcls_as_markdown() -> None:
    text = to_markdown(Report("t", [Section("Model card", markdown="\n**Card**\n\n- item\n")]))

    assert text == "# t\n\n## Model card\n\n**Card**\n\n- item\n"


@pytest.mark.parametrize("output_format", FORMATS)
def test_render_writes_each_format(output_format: str) -> None:
    document = report([SCRIPT])
    data = {"model_name": "prodcls", "versions": [1, 2]}
    renderer = {"json": lambda: to_json(data), "md": lambda: to_markdown(document)}
    renderer["html"] = lambda: to_html(document)

    assert render(document, data, output_format) == renderer[output_format]()


def test_render_refuses_an_unknown_format() -> None:
    assert set(FORMATS) == {"json", "md", "html"}
    with pytest.raises(ValueError, match="Unknown format 'pdf': choose one of json, md, html"):
        render(report(["x"]), {}, "pdf")


def test_json_round_trips_the_data_and_writes_text_as_it_is() -> None:
    data = {
        "model_name": "prodcls",
        "classes": [{"label": "café", "before": 1, "after": None, "status": "new class"}],
        "significance": {"mcnemar_p": 0.0625, "interval": [-0.1, 0.2]},
        "dirty": [False, True],
    }

    text = to_json(data)

    assert json.loads(text) == data
    assert '"café"' in text
    assert text.endswith("}\n")


def test_json_writes_other_values_as_their_text() -> None:
    moment = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)

    assert json.loads(to_json({"registered_at": moment})) == {"registered_at": str(moment)}


def test_rich_shows_text_that_looks_like_markup_literally() -> None:
    console = Console(record=True, width=200, file=io.StringIO())

    print_rich(report([MARKUP, "[red]alert[/red]", SCRIPT]), console)

    text = console.export_text()
    for written in (
        f"Audit {MARKUP}",
        f"Heading {MARKUP}",
        f"line {MARKUP}",
        "line [red]alert[/red]",
        f"Table {MARKUP}",
        f"column {MARKUP}",
        f"{MARKUP}, x",
        SCRIPT,
        f"note {MARKUP}",
    ):
        assert written in text
