"""Markdown tables whose cells show their text literally, whatever a label or file name holds.

A plain cell is escaped: a pipe or a line break cannot split the table, and Markdown or HTML in
it (`*bold*`, `[link](…)`, `<script>`) is shown as written instead of being interpreted. A cell
that is meant as Markdown is built with `bold`, `code` or `Markdown(...)` around escaped parts.
"""

import re
from collections.abc import Iterable, Sequence

# Characters that start inline Markdown (emphasis, code, links, strikethrough) or break a table
# cell get a backslash, which makes CommonMark and GFM show them as they are; HTML is
# neutralised by entities, as backslashes do not stop every renderer's HTML. Underscores
# between letters or digits (`images_per_class`) can neither open nor close emphasis in
# CommonMark, so they are left alone and identifiers stay readable in the Markdown source.
_ACTIVE = re.compile(r"(?P<intraword>(?<=[^\W_])_+(?=[^\W_]))|[\\`*_\[\]|~&<>]")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SEPARATOR = "---"


class Markdown(str):
    """Text already in Markdown, safe in a table cell: the table keeps it as written."""


def escape(value: object) -> Markdown:
    """`value` as text that renders literally in a Markdown table cell, on one line."""
    return Markdown(_ACTIVE.sub(_escaped, _LINE_BREAK.sub(" ", str(value))))


def _escaped(match: re.Match[str]) -> str:
    if match["intraword"]:
        return match["intraword"]
    return _ENTITIES.get(match[0], "\\" + match[0])


def bold(value: object) -> Markdown:
    """`value` in bold, its own characters escaped."""
    return Markdown(f"**{escape(value)}**")


def code(value: object) -> Markdown:
    """`value` as inline code: shown verbatim, so only backticks, pipes and line breaks need care.

    The fence is one backtick longer than the longest run inside (CommonMark's rule); GFM
    still splits a cell at a bare pipe, even inside code, so pipes keep their backslash.
    """
    text = _LINE_BREAK.sub(" ", str(value)).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    # CommonMark drops one space from each end of a span that begins and ends with one.
    spaced = text.startswith(" ") and text.endswith(" ") and text.strip() != ""
    padding = " " if text.startswith("`") or text.endswith("`") or spaced else ""
    return Markdown(f"{fence}{padding}{text}{padding}{fence}")


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GFM pipe table; every cell that is not `Markdown` is escaped, a list shows its items
    separated by commas."""
    lines = [_row(header), _row([Markdown(_SEPARATOR)] * len(header))]
    lines += [_row(row) for row in rows]
    return "\n".join(lines)


def _row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _cell(value: object) -> Markdown:
    if isinstance(value, Markdown):
        return value
    if isinstance(value, list | tuple):
        return Markdown(", ".join(_cell(item) for item in value))
    return escape(value)
