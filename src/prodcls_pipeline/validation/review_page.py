"""The review page: one self-contained HTML file showing each suspected label error and each
near-duplicate pair with its thumbnails, and the decisions rows ready to paste.

Everything a drop controls (labels, splits, notes, the decisions file's name) is escaped, and the
page declares a content security policy that forbids scripts and any fetch: even a label that
slipped through could not run or load anything. Thumbnails are inlined as data URIs.
"""

import base64
import html
import io
from collections.abc import Callable, Iterable, Mapping

import pandas as pd
from PIL import Image, ImageOps

from prodcls_pipeline.validation.duplicates import PAIR_COLUMNS
from prodcls_pipeline.validation.label_quality import SUSPECT_COLUMNS
from prodcls_pipeline.validation.review import (
    DECISIONS,
    EXCLUDE,
    KEEP,
    PROBABILITY_DIGITS,
    RELABEL,
    REVIEW_HEADER,
    SIMILARITY_DIGITS,
    ReviewOption,
    format_number,
    pair_options,
    suspect_options,
    text_value,
)

THUMBNAIL_QUALITY = 85
DATA_URI_PREFIX = "data:image/jpeg;base64,"
# Transparent pixels are shown on white, as a product photo on a page would be.
BACKGROUND = (255, 255, 255)
NO_SUGGESTIONS = "No suspected label errors."
NO_PAIRS = "No near-duplicate pairs."
NO_THUMBNAIL = "no thumbnail"
# No script, no network: images come only from data URIs, style only from the page itself.
_CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_MEANINGS = {
    KEEP: "the given label is right: the image stops counting as a suspect or a near-duplicate.",
    RELABEL: "use the label in the label column (fill coarse_label only for a new class).",
    EXCLUDE: "leave the image out of training and evaluation.",
}

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 90em; color: #1b1f24; }
h1 { font-size: 1.6em; border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.2em; margin-top: 1.8em; color: #0b4f8a; }
table { border-collapse: collapse; margin: .4em 0 1em; }
th, td { border: 1px solid #d0d7de; padding: .35em .6em; text-align: left; vertical-align: top; }
th { background: #f3f6f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code.sha { font-size: .85em; word-break: break-all; user-select: all; }
pre { background: #f6f8fa; padding: .5em; margin: .2em 0; white-space: pre-wrap;
      word-break: break-all; user-select: all; }
img { display: block; border: 1px solid #d0d7de; }
.pair { display: flex; gap: 1em; }
.pair figure { margin: 0; }
.missing { color: #57606a; font-style: italic; }
p.empty { color: #57606a; }
.option { font-size: .9em; color: #57606a; margin-top: .4em; }
"""


def thumbnail_jpeg(image: Image.Image, size: int) -> bytes:
    """`image` as a JPEG whose longer side is `size` pixels, upright and without EXIF."""
    if size < 1:
        raise ValueError(f"Thumbnail size must be at least 1 pixel, got {size}")
    # Orientation lives in EXIF, which the thumbnail drops: apply it to the pixels first.
    upright = _rgb(ImageOps.exif_transpose(image))
    scale = size / max(upright.size)
    target = (max(1, round(upright.width * scale)), max(1, round(upright.height * scale)))
    buffer = io.BytesIO()
    # No exif= or icc_profile= argument: Pillow writes neither unless asked.
    upright.resize(target, Image.Resampling.LANCZOS).save(
        buffer, format="JPEG", quality=THUMBNAIL_QUALITY
    )
    return buffer.getvalue()


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def render_review_page(
    suspects: pd.DataFrame,
    duplicate_pairs: pd.DataFrame,
    thumbnail: Callable[[str], bytes],
    title: str,
    decisions_file: str,
) -> str:
    """The review page. `thumbnail(sha256)` gives the JPEG of an image (`thumbnail_jpeg`), or
    empty bytes when there is none to show; each image is asked for once."""
    images = _Thumbnails(thumbnail)
    suspect_rows = _rows(suspects, SUSPECT_COLUMNS, "suspects")
    pair_rows = _rows(duplicate_pairs, PAIR_COLUMNS, "near-duplicate pairs")
    body = [
        f"<h1>{_h(title)}</h1>",
        _instructions(decisions_file),
        f"<h2>Suspected label errors ({len(suspect_rows)})</h2>",
        _suspects_table(suspect_rows, images) if suspect_rows else _empty(NO_SUGGESTIONS),
        f"<h2>Near-duplicate pairs ({len(pair_rows)})</h2>",
        _pairs_table(pair_rows, images) if pair_rows else _empty(NO_PAIRS),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CONTENT_SECURITY_POLICY}">\n'
        f"<title>{_h(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


class _Thumbnails:
    """Each image's data URI, made once: one image may sit in several pairs."""

    def __init__(self, thumbnail: Callable[[str], bytes]) -> None:
        self._thumbnail = thumbnail
        self._uris: dict[str, str] = {}

    def img(self, sha256: str, alt: str) -> str:
        if sha256 not in self._uris:
            data = self._thumbnail(sha256)
            self._uris[sha256] = DATA_URI_PREFIX + base64.b64encode(data).decode() if data else ""
        uri = self._uris[sha256]
        if not uri:
            return f'<span class="missing">{_h(NO_THUMBNAIL)}</span>'
        return f'<img src="{uri}" alt="{_h(alt)}">'


def _rows(table: pd.DataFrame, required: tuple[str, ...], name: str) -> list[dict[str, object]]:
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ValueError(f"The {name} table lacks column(s) {', '.join(missing)}")
    return table.to_dict("records")


def _instructions(decisions_file: str) -> str:
    meanings = "".join(
        f"<li><code>{_h(decision)}</code>: {_h(_MEANINGS[decision])}</li>" for decision in DECISIONS
    )
    return (
        "<h2>How to record a decision</h2>\n"
        f"<p>Add one row per image you decide on to <code>{_h(decisions_file)}</code> and "
        "commit it with git. Each image below shows its rows ready to copy; choose one per "
        "image. A file you create starts with this header:</p>\n"
        f"<pre>{_h(REVIEW_HEADER)}</pre>\n"
        f"<ul>{meanings}</ul>\n"
        "<p>The next <code>dvc repro</code> applies the file; the raw drops are never modified, "
        "and the audit lists every decision applied. Lines starting with <code>#</code> are "
        "comments.</p>"
    )


def _suspects_table(rows: Iterable[Mapping[str, object]], images: _Thumbnails) -> str:
    header = ("Image", "Given label", "Suggested label", "sha256", "Decision rows")
    body = []
    for suspect in rows:
        sha256 = text_value(suspect["sha256"])
        given = text_value(suspect["given_label"])
        cells = (
            images.img(sha256, given),
            _label_cell(given, suspect["given_probability"]),
            _label_cell(text_value(suspect["suggested_label"]), suspect["suggested_probability"]),
            _sha_cell(sha256),
            _options_cell(suspect_options(suspect)),
        )
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return _table(header, body)


def _pairs_table(rows: Iterable[Mapping[str, object]], images: _Thumbnails) -> str:
    header = ("Images (a, b)", "Similarity", "Decision rows")
    body = []
    for pair in rows:
        figures = "".join(_pair_figure(pair, side, images) for side in ("a", "b"))
        similarity = format_number(pair["similarity"], SIMILARITY_DIGITS)
        body.append(
            f'<tr><td><div class="pair">{figures}</div></td>'
            f'<td class="num">{_h(similarity)}</td>'
            f"<td>{_options_cell(pair_options(pair))}</td></tr>"
        )
    return _table(header, body)


def _pair_figure(pair: Mapping[str, object], side: str, images: _Thumbnails) -> str:
    sha256 = text_value(pair[f"sha256_{side}"])
    label = text_value(pair.get(f"label_{side}"))
    split = text_value(pair.get(f"split_{side}"))
    details = [f"<b>{_h(side)}</b>"]
    details += [f"label {_h(label)}"] if label else []
    details += [f"split {_h(split)}"] if split else []
    return (
        f"<figure>{images.img(sha256, label or sha256)}"
        f"<figcaption>{', '.join(details)}<br>{_sha_cell(sha256)}</figcaption></figure>"
    )


def _label_cell(label: str, probability: object) -> str:
    return f"{_h(label)}<br>p = {_h(format_number(probability, PROBABILITY_DIGITS))}"


def _sha_cell(sha256: str) -> str:
    return f'<code class="sha">{_h(sha256)}</code>'


def _options_cell(options: Iterable[ReviewOption]) -> str:
    return "".join(
        f'<div class="option">{_h(option.meaning)}:</div><pre>{_h(option.row)}</pre>'
        for option in options
    )


def _table(header: Iterable[str], body: list[str]) -> str:
    head = "".join(f"<th>{_h(column)}</th>" for column in header)
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )


def _empty(message: str) -> str:
    return f'<p class="empty">{_h(message)}</p>'


def _h(value: object) -> str:
    # `$` as an entity too: a viewer that typesets `$...$` as maths must show a label as written.
    return html.escape(str(value), quote=True).replace("$", "&#36;")
