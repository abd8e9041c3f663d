"""An audit report as a plain document (sections of text lines and tables) and its renderings:
a rich terminal view, Markdown, and one self-contained HTML file.

Every value that can come from a drop (labels, file names, drop ids) is text here and escaped by
each renderer, so a label like `<script>` or `*bold*` is shown as written, never interpreted.
"""

import html
import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markdown import Markdown as RichMarkdown
from rich.table import Table as RichTable
from rich.text import Text

from prodcls_pipeline.core.tables import escape, markdown_table

FORMATS = ("json", "md", "html")
_EMPTY_CELL = "–"
_FLOAT_DIGITS = 4

# Inline, so the HTML file needs nothing else: no script, no font, no stylesheet to fetch.
_HTML_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 78em; color: #1b1f24; }
h1 { font-size: 1.6em; border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.2em; margin-top: 1.8em; color: #0b4f8a; }
h3 { font-size: 1em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; margin: .4em 0 1em; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f6f9; }
tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note { color: #57606a; font-size: .9em; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; white-space: pre-wrap; }
"""


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    # A long listing (every added image, say) goes to the report files only; the terminal
    # says where to find it.
    in_terminal: bool = True


@dataclass
class Section:
    heading: str
    lines: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    # Markdown written by prodcls itself (a model card): rendered as Markdown where it can be.
    markdown: str = ""


@dataclass
class Report:
    title: str
    sections: list[Section]


def cell(value: Any) -> str:
    """How a value reads in any rendering: 4-decimal floats, yes/no, lists by commas."""
    if value is None or value == "":
        return _EMPTY_CELL
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{_FLOAT_DIGITS}f}"
    if isinstance(value, list | tuple):
        return ", ".join(cell(item) for item in value) or _EMPTY_CELL
    return str(value)


def signed(value: float | None) -> str:
    """A change, with its sign: a count as a whole number."""
    if value is None:
        return _EMPTY_CELL
    if isinstance(value, int):
        return f"{value:+d}"
    return f"{value:+.{_FLOAT_DIGITS}f}"


def literal(value: Any) -> str:
    """A value shown exactly as recorded (a param: 0.00015 must not read 0.0001)."""
    return _EMPTY_CELL if value is None else json.dumps(value)


def p_value(value: float) -> str:
    """A p-value: four significant digits, so a tiny one does not read 0.0000."""
    return f"{value:.4g}"


def print_rich(report: Report, console: Console) -> None:
    console.print(Text(report.title, style="bold underline"))
    for section in report.sections:
        console.print()
        console.rule(Text(section.heading, style="bold"))
        for line in section.lines:
            console.print(Text(line))
        for table in section.tables:
            if not table.in_terminal:
                console.print(
                    Text(f"{table.title}: {len(table.rows)} row(s) in --format json|md|html.")
                )
                continue
            view = RichTable(title=Text(table.title), title_justify="left", show_lines=False)
            for column in table.columns:
                view.add_column(Text(column), overflow="fold")
            for row in table.rows:
                view.add_row(*(Text(cell(value)) for value in row))
            console.print(view)
            if table.note:
                console.print(Text(table.note, style="dim"))
        if section.markdown:
            console.print(RichMarkdown(section.markdown))


def to_markdown(report: Report) -> str:
    parts = [f"# {escape(report.title)}"]
    for section in report.sections:
        parts.append(f"## {escape(section.heading)}")
        parts.extend(escape(line) for line in section.lines)
        for table in section.tables:
            parts.append(f"### {escape(table.title)}")
            parts.append(
                markdown_table(
                    table.columns, ([cell(value) for value in row] for row in table.rows)
                )
            )
            if table.note:
                parts.append(f"_{escape(table.note)}_")
        if section.markdown:
            parts.append(section.markdown.strip())
    return "\n\n".join(parts) + "\n"


def to_html(report: Report) -> str:
    """One self-contained HTML page; every value escaped."""
    body = [f"<h1>{_h(report.title)}</h1>"]
    for section in report.sections:
        body.append(f"<h2>{_h(section.heading)}</h2>")
        body.extend(f"<p>{_h(line)}</p>" for line in section.lines)
        for table in section.tables:
            body.append(f"<h3>{_h(table.title)}</h3>")
            body.append(_html_table(table))
            if table.note:
                body.append(f'<p class="note">{_h(table.note)}</p>')
        if section.markdown:
            body.append(f"<pre>{_h(section.markdown.strip())}</pre>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_h(report.title)}</title>\n<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def render(report: Report, data: Any, output_format: str) -> str:
    """The report in `output_format` (json renders the data the report was built from)."""
    if output_format == "json":
        return to_json(data)
    if output_format == "md":
        return to_markdown(report)
    if output_format == "html":
        return to_html(report)
    raise ValueError(f"Unknown format {output_format!r}: choose one of {', '.join(FORMATS)}")


def _html_table(table: Table) -> str:
    header = "".join(f"<th>{_h(column)}</th>" for column in table.columns)
    rows = []
    for row in table.rows:
        cells = "".join(
            f'<td class="num">{_h(cell(value))}</td>'
            if isinstance(value, int | float) and not isinstance(value, bool)
            else f"<td>{_h(cell(value))}</td>"
            for value in row
        )
        rows.append(f"<tr>{cells}</tr>")
    return (
        f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )


def _h(value: Any) -> str:
    return html.escape(str(value), quote=True)
