"""The validate stage's Kedro wiring: reports are saved before the gate raises; the hook."""

from pathlib import Path

import pandas as pd
import pytest
from helpers import row
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.text import TextDataset

from prodcls_pipeline.core.schema import MANIFEST_COLUMNS
from prodcls_pipeline.framework.hooks import ValidationReportHook
from prodcls_pipeline.framework.params import ValidateParams
from prodcls_pipeline.pipelines.validate import create_pipeline
from prodcls_pipeline.validation.checks import ValidationGateError

PARAMS = {
    "new_class_policy": "allow",
    "min_images_per_class": 2,
    "max_quarantine_fraction": 0.5,
    "min_width": 64,
    "min_height": 64,
    "max_width": 4000,
    "max_height": 4000,
    "max_class_share_shift": 0.5,
}


def manifest(conflict: bool) -> pd.DataFrame:
    names = [("apple", "a1"), ("apple", "a2"), ("pear", "p1"), ("pear", "p2")]
    if conflict:
        names.append(("pear", "a1"))
    rows = [
        row("drop-001", label, name, source_path=f"drop-001/{label}/{name}-{label}.jpg")
        for label, name in names
    ]
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def catalog(frame: pd.DataFrame, reports: Path) -> DataCatalog:
    """Files for the reports, as in production: the runner frees consumed MemoryDatasets."""
    return DataCatalog(
        datasets={
            "manifest": MemoryDataset(frame),
            "previous_validated_manifest": MemoryDataset(pd.DataFrame()),
            "params:validate": MemoryDataset(ValidateParams.model_validate(PARAMS)),
            "validation_report": JSONDataset(filepath=str(reports / "report.json")),
            "validation_report_markdown": TextDataset(filepath=str(reports / "report.md")),
            "validated_manifest": MemoryDataset(),
        }
    )


def test_passing_manifest_flows_through_the_gate(tmp_path: Path):
    data = catalog(manifest(conflict=False), tmp_path)
    SequentialRunner().run(create_pipeline(), data)
    assert data.load("validation_report")["success"]
    assert data.load("validation_report_markdown").startswith("# Manifest validation")
    assert len(data.load("validated_manifest")) == 4


def test_failing_gate_raises_after_the_reports_are_saved(tmp_path: Path):
    data = catalog(manifest(conflict=True), tmp_path)
    with pytest.raises(ValidationGateError, match="sha256 conflict"):
        SequentialRunner().run(create_pipeline(), data)
    assert not data.load("validation_report")["success"]
    assert "❌ sha256 conflict" in data.load("validation_report_markdown")
    with pytest.raises(Exception, match="has not been saved"):
        data.load("validated_manifest")


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
