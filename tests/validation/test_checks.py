"""The manifest's data contract (quality.py) and its Markdown page (quality_report.py)."""

import json

import pandas as pd
import pytest
from helpers import row, sha

from prodcls_pipeline.core.schema import INTEGER_COLUMNS, MANIFEST_COLUMNS
from prodcls_pipeline.validation.checks import (
    ValidationGateError,
    ValidationRules,
    raise_if_failed,
    select_validated,
    validate_manifest,
)
from prodcls_pipeline.validation.report import render_markdown

RULES = ValidationRules(
    new_class_policy="allow",
    min_images_per_class=3,
    max_quarantine_fraction=0.2,
    max_class_share_shift=0.3,
)
NO_PREVIOUS = pd.DataFrame()


def manifest(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return frame.astype(dict.fromkeys(INTEGER_COLUMNS, "int64"))


def clean_rows(drop: str = "drop-001", per_class: int = 4) -> list[dict]:
    return [
        row(drop, label, f"{label}-{i}") for label in ("apple", "pear") for i in range(per_class)
    ]


def check(report: dict, name: str) -> dict:
    return next(item for item in report["checks"] if item["name"] == name)


def failed_names(report: dict) -> set[str]:
    return {item["name"] for item in report["checks"] if not item["success"]}


def test_clean_manifest_passes_with_deterministic_json_report():
    clean = manifest(clean_rows())
    report = validate_manifest(clean, NO_PREVIOUS, RULES)
    assert report["success"], failed_names(report)
    assert report["counts"] == {
        "files": 8, "ok": 8, "quarantined": 0, "images": 8, "classes": 2, "drops": 1,
    }  # fmt: skip
    assert report["new_classes"] == ["apple", "pear"]
    assert "no previous manifest" in check(report, "known labels")["summary"]
    assert len(report["checks"]) == 15
    first = json.dumps(report, allow_nan=False, sort_keys=True)
    assert json.dumps(validate_manifest(clean, NO_PREVIOUS, RULES), sort_keys=True) == first


def test_corrupt_file_and_label_conflict_fail_naming_both():
    rows = clean_rows()
    rows.append(
        row(
            "drop-001",
            "apple",
            "broken",
            width=0,
            height=0,
            format="",
            status="quarantined",
            quarantine_reason="cannot identify image file",
        )  # fmt: skip
    )
    rows.append(row("drop-002", "pear", "apple-0"))  # same bytes as an apple, labelled pear
    report = validate_manifest(manifest(rows), NO_PREVIOUS, RULES)

    assert not report["success"]
    assert failed_names(report) == {"sha256 conflict"}
    assert report["conflicts"] == [
        {
            "sha256": sha("apple-0"),
            "labels": ["apple", "pear"],
            "source_paths": ["drop-001/apple/apple-0.jpg", "drop-002/pear/apple-0.jpg"],
        }
    ]
    assert report["quarantined"] == [
        {
            "drop": "drop-001",
            "source_path": "drop-001/apple/broken.jpg",
            "sha256": sha("broken"),
            "reason": "cannot identify image file",
        }
    ]
    markdown = render_markdown(report)
    assert "FAILED" in markdown
    assert "drop-001/apple/broken.jpg" in markdown
    assert "cannot identify image file" in markdown
    assert sha("apple-0") in markdown
    assert "❌ sha256 conflict" in markdown


def test_quarantine_fraction_per_drop():
    rows = clean_rows()
    rows += [
        row("drop-001", "apple", f"bad-{i}", status="quarantined", quarantine_reason="truncated")
        for i in range(3)
    ]
    report = validate_manifest(manifest(rows), NO_PREVIOUS, RULES)
    fraction = check(report, "quarantine fraction")
    assert not fraction["success"]
    assert "drop-001 has 3/11 quarantined" in fraction["summary"]
    assert len(report["quarantined"]) == 3


@pytest.mark.parametrize(("policy", "passes"), [("allow", True), ("fail", False)])
def test_new_class_under_policy(policy: str, passes: bool):
    previous = select_validated(manifest(clean_rows()))
    rows = clean_rows() + [row("drop-002", "kiwi", f"kiwi-{i}") for i in range(3)]
    rules = ValidationRules(**(vars(RULES) | {"new_class_policy": policy}))
    report = validate_manifest(manifest(rows), previous, rules)
    known = check(report, "known labels")
    assert known["success"] is passes
    assert report["new_classes"] == ["kiwi"]
    assert "kiwi" in known["summary"]
    assert "kiwi" in render_markdown(report)


def test_class_below_minimum_is_named_with_its_count():
    rows = clean_rows() + [row("drop-001", "plum", "plum-0"), row("drop-002", "plum", "plum-0")]
    report = validate_manifest(manifest(rows), NO_PREVIOUS, RULES)
    per_class = check(report, "images per class")
    assert not per_class["success"]
    assert per_class["offending"] == [{"label": "plum", "images": 1}]
    assert "plum has 1" in per_class["summary"]


def test_class_distribution_shift_fails_beyond_threshold():
    previous = select_validated(manifest(clean_rows()))
    rows = clean_rows() + [row("drop-002", "apple", f"apple-new-{i}") for i in range(20)]
    report = validate_manifest(manifest(rows), previous, RULES)
    distribution = check(report, "class distribution")
    assert not distribution["success"]
    assert [item["label"] for item in distribution["offending"]] == ["apple", "pear"]
    apple = report["class_distribution"][0]
    assert apple == {
        "label": "apple", "previous_images": 4, "previous_share": 0.5,
        "images": 24, "share": 0.8571, "share_change": 0.3571,
    }  # fmt: skip
    assert "Class distribution" in render_markdown(report)


def test_broken_structure_fails_and_skips_content_checks():
    broken = manifest(clean_rows()).drop(columns=["coarse_label"])
    broken.loc[0, "status"] = "weird"
    broken["sha256"] = broken["sha256"].str.upper()
    report = validate_manifest(broken, NO_PREVIOUS, RULES)
    assert failed_names(report) == {"schema"}
    assert report["skipped"]
    assert check(report, "schema")["offending"] == [
        {"column": "coarse_label", "problem": "missing"}
    ]
    json.dumps(report, allow_nan=False)

    bad_values = manifest(clean_rows())
    bad_values.loc[0, "status"] = "weird"
    bad_values.loc[1, "sha256"] = "not-a-hash"
    report = validate_manifest(bad_values, NO_PREVIOUS, RULES)
    assert failed_names(report) == {"status values", "sha256 format"}
    assert check(report, "status values")["offending"][0]["status"] == "weird"


def test_wrong_dtype_fails_column_types():
    frame = manifest(clean_rows()).astype({"width": "float64"})
    report = validate_manifest(frame, NO_PREVIOUS, RULES)
    types = check(report, "column types")
    assert not types["success"]
    assert types["offending"] == [{"column": "width", "expected": "int64", "observed": "float64"}]


def test_gate_names_each_failed_check_on_its_own_line():
    rows = clean_rows() + [row("drop-002", "pear", "apple-0")]
    rows += [
        row("drop-003", "pear", f"bad-{i}", status="quarantined", quarantine_reason="truncated")
        for i in range(2)
    ]
    report = validate_manifest(manifest(rows), NO_PREVIOUS, RULES)
    with pytest.raises(ValidationGateError) as caught:
        raise_if_failed(report)
    lines = str(caught.value).splitlines()
    assert any(
        line.startswith("  - sha256 conflict: 1 image with more than one label") for line in lines
    )
    assert any("quarantine fraction: drop-003 has 2/2 quarantined" in line for line in lines)


def test_select_validated_keeps_first_ok_row_per_image():
    rows = clean_rows("drop-002") + [row("drop-001", "apple", "apple-0")]
    rows.append(row("drop-001", "apple", "gone", status="quarantined", quarantine_reason="x"))
    validated = select_validated(manifest(rows))
    assert list(validated.columns) == list(MANIFEST_COLUMNS)
    assert validated["sha256"].is_unique
    assert len(validated) == 8
    first = validated[validated["sha256"] == sha("apple-0")]
    assert first["drop"].tolist() == ["drop-001"]


def test_markdown_caps_long_lists():
    rows = clean_rows(per_class=60)
    rows += [
        row("drop-001", "apple", f"bad-{i}", status="quarantined", quarantine_reason="truncated")
        for i in range(70)
    ]
    markdown = render_markdown(validate_manifest(manifest(rows), NO_PREVIOUS, RULES))
    assert "… and 20 more" in markdown
    assert markdown.count("| drop-001 | drop-001/apple/bad-") == 50


def test_markdown_shows_a_hostile_file_name_and_label_literally():
    rows = clean_rows()
    rows.append(
        row(
            "drop-001",
            "<b>apple</b>",
            "x|<script>alert(1)</script>*y*",
            status="quarantined",
            quarantine_reason="not an image:\n[click](http://example.com)",
        )
    )
    markdown = render_markdown(validate_manifest(manifest(rows), NO_PREVIOUS, RULES))
    assert (
        "| drop-001 | drop-001/&lt;b&gt;apple&lt;/b&gt;/x\\|&lt;script&gt;alert(1)&lt;/script&gt;"
        "\\*y\\*.jpg | not an image: \\[click\\](http://example.com) |"
    ) in markdown
    assert "<script>" not in markdown and "<b>" not in markdown


def test_quarantined_files_sharing_a_sha256_are_no_label_conflict():
    empty = {"sha256": sha(""), "status": "quarantined", "quarantine_reason": "empty file"}
    rows = clean_rows(per_class=8)
    rows += [row("drop-001", "apple", "zero", **empty), row("drop-001", "pear", "zero", **empty)]

    report = validate_manifest(manifest(rows), NO_PREVIOUS, RULES)

    assert check(report, "sha256 conflict")["success"], check(report, "sha256 conflict")


def test_labels_that_differ_only_in_case_stop_the_drop_naming_both_spellings():
    rows = clean_rows() + [row("drop-002", "APPLE", f"upper-{i}") for i in range(4)]

    report = validate_manifest(manifest(rows), NO_PREVIOUS, RULES)

    spellings = check(report, "label spellings")
    assert not report["success"] and not spellings["success"]
    assert spellings["offending"] == [{"labels": ["APPLE", "apple"]}]
    assert "'APPLE' vs 'apple'" in spellings["summary"]
    assert check(validate_manifest(manifest(clean_rows()), NO_PREVIOUS, RULES), "label spellings")[
        "success"
    ]


def test_the_report_lists_each_normalised_spelling_with_its_files_and_the_gate_passes():
    rows = clean_rows() + [
        row("drop-002", "apple", f"spaced-{i}", given_label="apple ") for i in range(3)
    ]
    rows += [row("drop-002", "pear", "coarse", coarse_label="Fruit", given_coarse_label="Fruit\t")]

    report = validate_manifest(manifest(rows), NO_PREVIOUS, RULES)

    assert report["success"]
    assert report["normalised_labels"] == [
        {
            "drop": "drop-002",
            "column": "coarse_label",
            "given": "Fruit\t",
            "normalised": "Fruit",
            "files": 1,
        },
        {
            "drop": "drop-002",
            "column": "label",
            "given": "apple ",
            "normalised": "apple",
            "files": 3,
        },
    ]
    page = render_markdown(report)
    assert "## Normalised labels (2)" in page
    assert "| drop-002 | label | `apple ` | `apple` | 3 |" in page
    assert "None: every label was spelt as it is." in render_markdown(
        validate_manifest(manifest(clean_rows()), NO_PREVIOUS, RULES)
    )


def test_one_class_alone_stops_the_gate_but_a_drop_of_one_class_adds_to_the_others():
    apples = [row("drop-001", "apple", f"a-{i}") for i in range(4)]

    alone = validate_manifest(manifest(apples), NO_PREVIOUS, RULES)
    beside = validate_manifest(
        manifest(clean_rows() + [row("drop-002", "pear", f"p-{i}") for i in range(4)]),
        NO_PREVIOUS,
        RULES,
    )

    classes = check(alone, "classes")
    assert not alone["success"] and not classes["success"]
    assert classes["summary"] == (
        "1 class across the drops: a classifier needs at least 2; land a drop with another class"
    )
    assert check(beside, "classes")["success"] and beside["success"]


def test_a_class_under_two_coarse_labels_stops_the_drop():
    rows = [
        row("drop-001", "apple", f"a-{i}", coarse_label="Fruit" if i % 2 else "Vegetables")
        for i in range(4)
    ] + [row("drop-001", "pear", f"p-{i}", coarse_label="Fruit") for i in range(4)]

    report = validate_manifest(manifest(rows), NO_PREVIOUS, RULES)

    coarse = check(report, "coarse labels")
    assert not coarse["success"] and not report["success"]
    assert coarse["offending"] == [{"label": "apple", "coarse_labels": ["Fruit", "Vegetables"]}]
    assert "apple in 'Fruit' and 'Vegetables'" in coarse["summary"]


def test_a_drop_without_coarse_labels_does_not_contradict_one_with_them():
    rows = [
        row("drop-001", label, f"{label}-{i}", coarse_label="Fruit")
        for label in ("apple", "pear")
        for i in range(4)
    ]
    rows += [row("drop-002", "apple", f"plain-{i}") for i in range(4)]

    report = validate_manifest(manifest(rows), NO_PREVIOUS, RULES)

    assert check(report, "coarse labels")["success"]
