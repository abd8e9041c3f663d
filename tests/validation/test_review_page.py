"""The review page (review_page.py): self-contained, escaped, one inlined thumbnail per image
shown, ready-to-paste rows, and plain messages for empty tables."""

import base64
import io
import re

import pandas as pd
import pytest
from helpers import sha
from PIL import Image

from prodcls_pipeline.validation.review import parse_review_decisions
from prodcls_pipeline.validation.review_page import (
    DATA_URI_PREFIX,
    NO_PAIRS,
    NO_SUGGESTIONS,
    NO_THUMBNAIL,
    render_review_page,
    thumbnail_jpeg,
)

HOSTILE_LABEL = "<script>alert('x')</script> & \"quoted\" $x^2$"
HOSTILE_FILE = "data/01_raw/<b>review</b>&.csv"
HEADER = "sha256,decision,label,coarse_label,note"
EXIF_ORIENTATION = 0x0112
ROTATED_90 = 6  # EXIF: the stored pixels must be turned 90° clockwise to stand upright


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


THUMBNAILS = {sha("a"): jpeg((200, 0, 0)), sha("b"): jpeg((0, 200, 0)), sha("c"): jpeg((0, 0, 200))}


def suspects(label: str = "apple") -> pd.DataFrame:
    return pd.DataFrame(
        {"sha256": [sha("a"), sha("b")], "given_label": [label, "pear"],
         "suggested_label": ["pear", label], "given_probability": [0.05, 0.2],
         "suggested_probability": [0.91, 0.7]}
    )  # fmt: skip


def pairs(label: str = "leek") -> pd.DataFrame:
    return pd.DataFrame(
        {"sha256_a": [sha("b")], "sha256_b": [sha("c")], "similarity": [0.987],
         "label_a": ["pear"], "label_b": [label], "split_a": ["train"], "split_b": ["test"]}
    )  # fmt: skip


def page(suspect_table: pd.DataFrame, pair_table: pd.DataFrame, **options) -> str:
    calls: list[str] = options.pop("calls", [])

    def thumbnail(sha256: str) -> bytes:
        calls.append(sha256)
        return THUMBNAILS.get(sha256, b"")

    return render_review_page(
        suspect_table,
        pair_table,
        thumbnail,
        title=options.get("title", "Review of drop-007"),
        decisions_file=options.get("decisions_file", "data/01_raw/review_decisions.csv"),
    )


def test_one_inlined_jpeg_per_thumbnail_and_each_image_asked_for_once():
    calls: list[str] = []
    text = page(suspects(), pairs(), calls=calls)
    uris = re.findall(r'<img src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', text)
    # Two suspects, and both images of the pair: image b is shown twice but made once.
    assert len(uris) == 4 == text.count(DATA_URI_PREFIX)
    assert sorted(calls) == sorted({sha("a"), sha("b"), sha("c")})
    assert base64.b64decode(uris[0]) == THUMBNAILS[sha("a")]


def test_the_page_is_self_contained():
    text = page(suspects(), pairs())
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_hostile_labels_and_file_name_are_escaped():
    text = page(suspects(HOSTILE_LABEL), pairs(HOSTILE_LABEL), decisions_file=HOSTILE_FILE,
                title=HOSTILE_LABEL)  # fmt: skip
    assert "<script" not in text and "<b>review" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;" in text
    assert "$" not in text and "&#36;x^2&#36;" in text
    assert "data/01_raw/&lt;b&gt;review&lt;/b&gt;&amp;.csv" in text


def test_each_suspect_shows_its_labels_probabilities_sha_and_rows_to_paste():
    text = page(suspects(), pairs().iloc[:0])
    assert f'<code class="sha">{sha("a")}</code>' in text
    assert "p = 0.050" in text and "p = 0.910" in text
    rows = re.findall(r"<pre>([^<]*)</pre>", text)
    relabel = next(row for row in rows if row.startswith(f"{sha('a')},relabel,"))
    decided = parse_review_decisions(f"{HEADER}\n{relabel}\n", "page")
    assert decided[["decision", "label"]].values.tolist() == [["relabel", "pear"]]
    assert "Suspected label errors (2)" in text


def test_each_pair_shows_both_images_side_by_side_with_labels_splits_and_similarity():
    text = page(suspects().iloc[:0], pairs())
    pair = re.search(r'<div class="pair">(.*?)</div></td>', text, re.S)
    assert pair is not None
    assert pair[1].count("<figure>") == 2 and pair[1].count(DATA_URI_PREFIX) == 2
    assert "label pear, split train" in pair[1] and "label leek, split test" in pair[1]
    assert "0.987" in text


def test_empty_tables_say_so_instead_of_bare_headers():
    text = page(suspects().iloc[:0], pairs().iloc[:0])
    assert NO_SUGGESTIONS in text and NO_PAIRS in text
    assert "<table" not in text and DATA_URI_PREFIX not in text


def test_instructions_name_the_decisions_file_and_dvc_repro():
    text = page(suspects(), pairs(), decisions_file="data/01_raw/review_decisions.csv")
    instructions = text.split("<h2>Suspected")[0]
    assert "data/01_raw/review_decisions.csv" in instructions
    assert "dvc repro" in instructions and HEADER in instructions


def test_an_image_without_thumbnail_is_named_not_broken():
    text = page(suspects().assign(sha256=[sha("a"), sha("unknown")]), pairs().iloc[:0])
    assert text.count(DATA_URI_PREFIX) == 1 and NO_THUMBNAIL in text


def test_a_table_without_its_columns_is_an_error():
    with pytest.raises(ValueError, match="suspects table lacks column"):
        page(suspects().drop(columns="suggested_label"), pairs())


def test_thumbnail_is_an_upright_jpeg_of_the_given_size_without_exif():
    image = Image.new("RGB", (300, 100), (10, 120, 200))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATED_90
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    source = Image.open(io.BytesIO(buffer.getvalue()))
    assert source.getexif()[EXIF_ORIENTATION] == ROTATED_90

    thumbnail = Image.open(io.BytesIO(thumbnail_jpeg(source, 60)))
    assert thumbnail.format == "JPEG"
    assert thumbnail.size == (20, 60)  # turned upright, then the longer side scaled to 60
    assert not thumbnail.getexif() and "exif" not in thumbnail.info


def test_thumbnail_of_a_transparent_image_is_on_white():
    image = Image.new("RGBA", (10, 20), (0, 0, 0, 0))
    thumbnail = Image.open(io.BytesIO(thumbnail_jpeg(image, 40)))
    assert thumbnail.mode == "RGB" and thumbnail.size == (20, 40)
    assert min(thumbnail.getpixel((10, 20))) > 240


def test_thumbnail_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1 pixel"):
        thumbnail_jpeg(Image.new("RGB", (4, 4)), 0)
