"""The reviewer's decisions file (review.py): strict parsing, applying it to the manifest, and the
template of proposals."""

from pathlib import Path

import pandas as pd
import pytest
from helpers import row, sha

from prodcls_pipeline.core.schema import INTEGER_COLUMNS, MANIFEST_COLUMNS
from prodcls_pipeline.validation.review import (
    APPLIED_COLUMNS,
    REVIEW_COLUMNS,
    REVIEW_HEADER,
    ReviewFileError,
    apply_review,
    parse_review_decisions,
    read_review_decisions,
    review_template_rows,
)

HEADER = "sha256,decision,label,coarse_label,note"
APPLE, PEAR, LEEK = sha("apple-0"), sha("pear-0"), sha("leek-0")


def manifest(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return frame.astype(dict.fromkeys(INTEGER_COLUMNS, "int64"))


def fruit_manifest() -> pd.DataFrame:
    """Apples and pears (coarse: fruit), leeks (vegetable); apple-0 is in two drops."""
    rows = [
        row("drop-001", label, f"{label}-{i}", coarse_label=coarse)
        for label, coarse in (("apple", "fruit"), ("pear", "fruit"), ("leek", "vegetable"))
        for i in range(3)
    ]
    rows.append(row("drop-002", "apple", "apple-0", coarse_label="fruit"))
    return manifest(rows)


def decisions(*rows: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        [dict(zip(REVIEW_COLUMNS, values, strict=True)) for values in rows],
        columns=list(REVIEW_COLUMNS),
    )


def write(tmp_path: Path, text: str, **options) -> Path:
    path = tmp_path / "review_decisions.csv"
    path.write_text(text, encoding=options.get("encoding", "utf-8"), newline="")
    return path


# --- reading the file ----------------------------------------------------------------------


def test_a_missing_file_means_no_decisions(tmp_path: Path):
    read = read_review_decisions(tmp_path / "review_decisions.csv")
    assert read.empty
    assert list(read.columns) == list(REVIEW_COLUMNS)


def test_reads_rows_stripped_with_comments_and_blank_lines_skipped(tmp_path: Path):
    path = write(
        tmp_path,
        f"{HEADER}\n"
        '# a comment, with "quotes and commas\n'
        f"{APPLE.upper()} , Keep ,,, looks right \n"
        "\n"
        f'{PEAR},relabel,"apple, green",fruit,"two\nlines"\n'
        f"  # {LEEK},exclude,,,\n",
    )
    read = read_review_decisions(path)
    assert read.to_dict("records") == [
        {"sha256": APPLE, "decision": "keep", "label": "", "coarse_label": "",
         "note": "looks right"},
        {"sha256": PEAR, "decision": "relabel", "label": "apple, green", "coarse_label": "fruit",
         "note": "two\nlines"},
    ]  # fmt: skip


def test_bom_and_crlf_are_accepted(tmp_path: Path):
    text = f"{HEADER}\r\n{APPLE},keep,,,\r\n{PEAR},exclude,,,blurred\r\n"
    path = write(tmp_path, text, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    read = read_review_decisions(path)
    assert read["sha256"].tolist() == [APPLE, PEAR]
    assert read["note"].tolist() == ["", "blurred"]


def test_a_file_with_only_a_header_or_only_comments_has_no_decisions(tmp_path: Path):
    assert read_review_decisions(write(tmp_path, f"{HEADER}\n")).empty
    assert read_review_decisions(write(tmp_path, "# nothing decided yet\n\n")).empty


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (f"{APPLE},maybe,,,", 2, "decision 'maybe' is not one of keep, relabel, exclude"),
        (f"{APPLE[:-1]},keep,,,", 2, "is not 64 hexadecimal characters"),
        (f"{APPLE[:-1]}g,keep,,,", 2, "is not 64 hexadecimal characters"),
        (f"{APPLE},relabel,,fruit,", 2, f"relabel of {APPLE} has no label"),
        (f"{APPLE},keep,pear,,", 2, "gives label, which only relabel uses"),
        (f"{APPLE},exclude,,fruit,", 2, "gives coarse_label, which only relabel uses"),
        (f"{APPLE},keep,,", 2, "expected 5 fields"),
        (f"{APPLE},keep,,,,extra", 2, "expected 5 fields"),
        (f"# first\n\n{APPLE},keep,,,\n{PEAR},keep,,,\n{APPLE},exclude,,,", 6,
         f"sha256 {APPLE} is listed twice (first on line 4)"),
        (f"{APPLE},keep,,,\n{HEADER}", 3, "the header is repeated"),
    ],
)  # fmt: skip
def test_each_bad_row_is_an_error_naming_the_file_and_line(
    tmp_path: Path, body: str, line: int, message: str
):
    path = write(tmp_path, f"{HEADER}\n{body}\n")
    with pytest.raises(ReviewFileError) as error:
        read_review_decisions(path)
    assert str(error.value).startswith(f"{path}, line {line}: ")
    assert message in str(error.value)


@pytest.mark.parametrize(
    "header",
    ["sha256,decision,label,note", "sha256,label,decision,coarse_label,note",
     "sha256,decision,label,coarse_label,note,extra", f"{APPLE},keep,,,"],
)  # fmt: skip
def test_a_wrong_header_is_an_error_showing_the_expected_one(tmp_path: Path, header: str):
    path = write(tmp_path, f"\n{header}\n{APPLE},keep,,,\n")
    with pytest.raises(ReviewFileError, match=r", line 2: the header must be") as error:
        read_review_decisions(path)
    assert REVIEW_HEADER in str(error.value)


def test_text_that_is_not_utf8_is_an_error_naming_the_file(tmp_path: Path):
    path = tmp_path / "review_decisions.csv"
    path.write_bytes(f"{HEADER}\n{APPLE},keep,,,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ReviewFileError, match="not UTF-8"):
        read_review_decisions(path)


def test_parse_names_its_source_in_errors():
    with pytest.raises(ReviewFileError, match=r"^from git, line 3: "):
        parse_review_decisions(f"{HEADER}\n{APPLE},keep,,,\n{PEAR},drop,,,\n", "from git")


# --- applying decisions --------------------------------------------------------------------


def test_relabel_applies_to_every_row_of_the_image_in_every_drop():
    outcome = apply_review(fruit_manifest(), decisions((APPLE, "relabel", "pear", "", "green")))
    relabelled = outcome.manifest[outcome.manifest["sha256"] == APPLE]
    assert sorted(relabelled["drop"]) == ["drop-001", "drop-002"]
    assert set(relabelled["label"]) == {"pear"}
    # An existing class brings its own coarse label.
    assert set(relabelled["coarse_label"]) == {"fruit"}
    assert outcome.applied.to_dict("records") == [
        {"sha256": APPLE, "decision": "relabel", "old_label": "apple", "new_label": "pear",
         "rows": 2, "note": "green"},
    ]  # fmt: skip
    assert list(outcome.applied.columns) == list(APPLIED_COLUMNS)
    assert len(outcome.manifest) == len(fruit_manifest())
    assert outcome.reviewed == {APPLE}


def test_relabel_to_an_existing_class_takes_its_coarse_label_not_the_old_one():
    outcome = apply_review(fruit_manifest(), decisions((LEEK, "relabel", "apple", "", "")))
    leek = outcome.manifest[outcome.manifest["sha256"] == LEEK].iloc[0]
    assert (leek["label"], leek["coarse_label"]) == ("apple", "fruit")


def test_relabel_to_a_new_class_needs_its_coarse_label():
    with pytest.raises(ReviewFileError, match="'kiwi' is a new class with no known coarse label"):
        apply_review(fruit_manifest(), decisions((APPLE, "relabel", "kiwi", "", "")))
    outcome = apply_review(
        fruit_manifest(),
        decisions((APPLE, "relabel", "kiwi", "fruit", ""), (PEAR, "relabel", "kiwi", "", "")),
    )
    kiwis = outcome.manifest[outcome.manifest["label"] == "kiwi"]
    assert set(kiwis["sha256"]) == {APPLE, PEAR}
    # The second relabel to the new class takes the coarse label the first one gives.
    assert set(kiwis["coarse_label"]) == {"fruit"}


def test_a_coarse_label_that_contradicts_the_class_is_an_error():
    with pytest.raises(ReviewFileError, match="class 'pear' already has coarse label 'fruit'"):
        apply_review(fruit_manifest(), decisions((LEEK, "relabel", "pear", "vegetable", "")))
    with pytest.raises(ReviewFileError, match="disagree"):
        apply_review(
            fruit_manifest(),
            decisions((APPLE, "relabel", "kiwi", "fruit", ""), (PEAR, "relabel", "kiwi", "x", "")),
        )


def test_without_coarse_labels_in_the_dataset_a_new_class_needs_none():
    flat = manifest([row("drop-001", "apple", "apple-0"), row("drop-001", "pear", "pear-0")])
    outcome = apply_review(flat, decisions((APPLE, "relabel", "kiwi", "", "")))
    assert outcome.manifest.loc[0, ["label", "coarse_label"]].tolist() == ["kiwi", ""]


def test_exclude_removes_every_row_of_the_image():
    outcome = apply_review(fruit_manifest(), decisions((APPLE, "exclude", "", "", "blurred")))
    assert APPLE not in set(outcome.manifest["sha256"])
    assert len(outcome.manifest) == len(fruit_manifest()) - 2
    assert outcome.manifest.index.tolist() == list(range(len(outcome.manifest)))
    assert outcome.applied[["decision", "old_label", "new_label", "rows"]].values.tolist() == [
        ["exclude", "apple", "", 2]
    ]


def test_keep_changes_no_row_and_is_reported():
    outcome = apply_review(fruit_manifest(), decisions((PEAR, "keep", "", "", "it is a pear")))
    pd.testing.assert_frame_equal(outcome.manifest, fruit_manifest())
    assert outcome.keep == {PEAR}
    assert outcome.applied[["old_label", "new_label", "rows"]].values.tolist() == [
        ["pear", "pear", 1]
    ]


def test_decisions_matching_no_image_are_reported_not_applied():
    unknown = sha("not-delivered-yet")
    outcome = apply_review(
        fruit_manifest(),
        decisions((unknown, "relabel", "kiwi", "", ""), (PEAR, "exclude", "", "", "")),
    )
    assert outcome.unmatched["sha256"].tolist() == [unknown]
    assert outcome.applied["sha256"].tolist() == [PEAR]
    assert "kiwi" not in set(outcome.manifest["label"])


def test_inputs_are_not_mutated():
    original, review = fruit_manifest(), decisions(
        (APPLE, "relabel", "kiwi", "fruit", ""), (PEAR, "exclude", "", "", ""),
        (LEEK.upper(), "KEEP", "", "", ""),
    )  # fmt: skip
    before_manifest, before_review = original.copy(deep=True), review.copy(deep=True)
    outcome = apply_review(original, review)
    pd.testing.assert_frame_equal(original, before_manifest)
    pd.testing.assert_frame_equal(review, before_review)
    assert outcome.keep == {LEEK}
    assert outcome.manifest is not original


def test_a_decisions_table_is_held_to_the_file_rules():
    with pytest.raises(ReviewFileError, match="review decision 2: decision 'drop'"):
        apply_review(
            fruit_manifest(), decisions((APPLE, "keep", "", "", ""), (PEAR, "drop", "", "", ""))
        )
    with pytest.raises(ReviewFileError, match="listed twice"):
        apply_review(
            fruit_manifest(), decisions((APPLE, "keep", "", "", ""), (APPLE, "exclude", "", "", ""))
        )
    with pytest.raises(ReviewFileError, match="lack column"):
        apply_review(fruit_manifest(), pd.DataFrame({"sha256": [APPLE]}))


def test_no_decisions_leave_the_manifest_as_it_is():
    outcome = apply_review(fruit_manifest(), read_review_decisions(Path("/nonexistent/x.csv")))
    pd.testing.assert_frame_equal(outcome.manifest, fruit_manifest())
    assert outcome.applied.empty and outcome.unmatched.empty and not outcome.keep


# --- the template --------------------------------------------------------------------------


def suspects() -> pd.DataFrame:
    return pd.DataFrame(
        {"sha256": [APPLE], "given_label": ["apple"], "suggested_label": ["pear, green"],
         "given_probability": [0.05], "suggested_probability": [0.91]}
    )  # fmt: skip


def pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {"sha256_a": [PEAR], "sha256_b": [LEEK], "similarity": [0.987],
         "label_a": ["pear"], "label_b": ["leek"], "split_a": ["train"], "split_b": ["test"]}
    )  # fmt: skip


def test_a_pasted_template_decides_nothing_until_a_row_is_uncommented():
    template = review_template_rows(suspects(), pairs(), header=True)
    assert template.startswith(f"{REVIEW_HEADER}\n")
    assert parse_review_decisions(template, "template").empty
    lines = template.splitlines()
    relabel = next(line for line in lines if line.startswith(f"# {APPLE},relabel"))
    chosen = template.replace(relabel, relabel.removeprefix("# "))
    decided = parse_review_decisions(chosen, "template")
    assert decided[["sha256", "decision", "label"]].values.tolist() == [
        [APPLE, "relabel", "pear, green"]
    ]
    assert "p=0.910" in decided.loc[0, "note"]


def test_the_template_offers_each_decision_for_a_pair():
    template = review_template_rows(suspects().iloc[:0], pairs())
    rows = [line.removeprefix("# ") for line in template.splitlines()[1:]]
    parsed = [parse_review_decisions(f"{HEADER}\n{line}\n", "t").iloc[0] for line in rows]
    assert [(item["sha256"], item["decision"], item["label"]) for item in parsed] == [
        (LEEK, "exclude", ""), (PEAR, "exclude", ""), (PEAR, "keep", ""), (LEEK, "keep", ""),
        (LEEK, "relabel", "pear"),
    ]  # fmt: skip
    assert "label 'pear' split 'train'" in template.splitlines()[0] and "0.987" in template


def test_a_label_with_a_line_break_cannot_break_out_of_a_comment():
    injected = "\n" + sha("x") + ",exclude,,,"
    hostile = suspects().assign(given_label="apple" + injected, suggested_label="pear" + injected)
    template = review_template_rows(hostile, pairs().iloc[:0])
    assert parse_review_decisions(template, "template").empty
    assert all(line.startswith("# ") for line in template.splitlines())
    assert "write it by hand" in template


def test_the_template_of_nothing_is_empty():
    assert review_template_rows(suspects().iloc[:0], pairs().iloc[:0]) == ""
