"""The validate stage's Kedro wiring: review decisions applied, the contract and the data-quality
checks reported (JSON, Markdown, review page) before the gate raises; the hook."""

from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO, FakeImageStore, row, sha, synthetic_images, validate_catalog
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from prodcls_pipeline.core.schema import MANIFEST_COLUMNS
from prodcls_pipeline.framework.hooks import ValidationReportHook
from prodcls_pipeline.framework.params import ValidateParams
from prodcls_pipeline.pipelines.validate import create_pipeline
from prodcls_pipeline.validation.checks import ValidationGateError
from prodcls_pipeline.validation.review import REVIEW_HEADER

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
CONTRACT = {
    "new_class_policy": "allow",
    "min_images_per_class": 2,
    "max_quarantine_fraction": 0.5,
    "max_class_share_shift": 0.5,
}
NAMES = [("apple", "a1"), ("apple", "a2"), ("pear", "p1"), ("pear", "p2")]


def manifest(names: list[tuple[str, str]]) -> pd.DataFrame:
    rows = [
        row("drop-001", label, name, source_path=f"drop-001/{label}/{name}-{label}.jpg")
        for label, name in names
    ]
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def validate_params(**duplicates: str) -> ValidateParams:
    section = {**PARAMS["validate"], **CONTRACT}
    section["duplicates"] = {**section["duplicates"], **duplicates}
    return ValidateParams.model_validate(section)


def image_store(names: list[str], copies: dict[str, str] | None = None) -> FakeImageStore:
    """A synthetic image per name; each of `copies` (name: original) the same picture again."""
    images = dict(zip((sha(name) for name in names), synthetic_images(len(names), 1), strict=True))
    for copy, original in (copies or {}).items():
        images[sha(copy)] = images[sha(original)]
    return FakeImageStore(images)


def catalog(
    frame: pd.DataFrame,
    tmp_path: Path,
    store: FakeImageStore,
    decisions: str = REVIEW_HEADER + "\n",
    params: ValidateParams | None = None,
) -> DataCatalog:
    return validate_catalog(frame, tmp_path, store, params or validate_params(), decisions)


def test_passing_manifest_flows_through_the_gate(tmp_path: Path):
    store = image_store([name for _, name in NAMES])
    data = catalog(manifest(NAMES), tmp_path, store)
    SequentialRunner().run(create_pipeline(), data)
    report = data.load("validation_report")
    assert report["success"] and report["new_drops"] == ["drop-001"]
    names = [check["name"] for check in report["checks"]]
    assert "drift image_mmd (drop-001)" in names and "suspected label errors (drop-001)" in names
    assert data.load("validation_report_markdown").startswith("# Manifest validation")
    assert "No suspected label errors." in data.load("label_review")
    assert len(data.load("validated_manifest")) == 4


def test_failing_gate_raises_after_the_reports_are_saved(tmp_path: Path):
    store = image_store([name for _, name in NAMES])
    data = catalog(manifest([*NAMES, ("pear", "a1")]), tmp_path, store)
    with pytest.raises(ValidationGateError, match="sha256 conflict"):
        SequentialRunner().run(create_pipeline(), data)
    assert not data.load("validation_report")["success"]
    assert "❌ sha256 conflict" in data.load("validation_report_markdown")
    assert data.load("label_review").startswith("<!DOCTYPE html>")
    with pytest.raises(Exception, match="has not been saved"):
        data.load("validated_manifest")


def test_one_picture_under_two_labels_warns_or_blocks_by_policy(tmp_path: Path):
    names = [*NAMES, ("pear", "p3")]
    store = image_store([name for _, name in NAMES], copies={"p3": "a1"})
    warned = catalog(manifest(names), tmp_path / "warn", store)
    SequentialRunner().run(create_pipeline(), warned)
    report = warned.load("validation_report")
    assert report["success"] and "near-duplicates with two labels" in report["warnings"]
    [pair] = report["duplicates"]["conflicting_pairs"]
    assert {pair["sha256_a"], pair["sha256_b"]} == {sha("a1"), sha("p3")}
    assert "Near-duplicate pairs (1)" in warned.load("label_review")

    blocked = catalog(
        manifest(names), tmp_path / "block", store, params=validate_params(label_conflicts="block")
    )
    with pytest.raises(ValidationGateError, match="near-duplicates with two labels"):
        SequentialRunner().run(create_pipeline(), blocked)
    assert "❌ | near-duplicates with two labels" in blocked.load("validation_report_markdown")


def test_review_decisions_relabel_and_exclude_without_touching_the_manifest(tmp_path: Path):
    names = [*NAMES, ("apple", "a3"), ("pear", "p3")]
    store = image_store([name for _, name in names[:-1]], copies={"p3": "a1"})
    decisions = (
        f"{REVIEW_HEADER}\n"
        f"{sha('p3')},exclude,,,same shot as a1\n"
        f"{sha('a2')},relabel,pear,,checked by hand\n"
        f"{sha('zz')},keep,,,not delivered yet\n"
    )
    frame = manifest(names)
    original = frame.copy()
    data = catalog(frame, tmp_path, store, decisions)
    SequentialRunner().run(create_pipeline(), data)
    pd.testing.assert_frame_equal(frame, original)
    report = data.load("validation_report")
    assert report["success"] and report["warnings"] == []
    applied = {item["sha256"]: item for item in report["review"]["applied"]}
    assert applied[sha("p3")]["decision"] == "exclude"
    assert (applied[sha("a2")]["old_label"], applied[sha("a2")]["new_label"]) == ("apple", "pear")
    assert [item["sha256"] for item in report["review"]["unmatched"]] == [sha("zz")]
    validated = data.load("validated_manifest").set_index("sha256")
    assert sha("p3") not in validated.index and validated.loc[sha("a2"), "label"] == "pear"
    assert "Review decisions (2 applied)" in data.load("validation_report_markdown")


def test_hook_adds_the_report_paths_to_a_gate_error():
    hook = ValidationReportHook()
    hook.after_catalog_created(
        conf_catalog={
            "validation_report_markdown": {"type": "text.TextDataset", "filepath": "/p/report.md"},
            "validation_report": {"type": "json.JSONDataset", "filepath": "/p/report.json"},
        }
    )
    error = ValidationGateError("Manifest validation failed")
    hook.on_node_error(error)
    assert error.__notes__ == [
        "Validation report: /p/report.md",
        "Validation report (JSON): /p/report.json",
    ]
    other = ValueError("unrelated")
    hook.on_node_error(other)
    assert not hasattr(other, "__notes__")
