"""One real drop with a file of every bad kind among the bundled photos: ingest quarantines each
bad file with its reason, the validation report lists them all, and since they are under the
quarantine share the good photos pass the gate to train."""

import csv
import os
from pathlib import Path

from helpers import SAMPLE_DIR, awkward_files, project_params, validate_catalog
from kedro.runner import SequentialRunner

from prodcls_pipeline.core.schema import QUARANTINED
from prodcls_pipeline.core.tables import code
from prodcls_pipeline.data.drops import build_manifest, scan_drops
from prodcls_pipeline.data.images import ImageStore, IngestSettings
from prodcls_pipeline.data.layout import layout_drops
from prodcls_pipeline.framework.params import ValidateParams
from prodcls_pipeline.pipelines.validate import create_pipeline

LABEL = "Banana"
# How the drop's labels.csv spells LABEL for the bad files: normalised, and the report says so.
SPELT_LABEL = f" {LABEL}  "
PARAMS = project_params()


def add_bad_files(drop: Path, outside: Path) -> dict[str, str]:
    """Every awkward kind, a link out of the drop and a FIFO, listed in the drop's labels.csv
    under a real class, spelt with stray spaces; {relative path: expected outcome}."""
    expected = {
        f"awkward/{name}": outcome for name, outcome in awkward_files(drop / "awkward").items()
    }
    (drop / "awkward" / "secret.jpg").symlink_to(outside)
    os.mkfifo(drop / "awkward" / "pipe.jpg")
    expected |= {
        "awkward/secret.jpg": "quarantined a symbolic link",
        "awkward/pipe.jpg": "quarantined not a regular file",
    }
    with (drop / "labels.csv").open("a", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        for relative in expected:
            writer.writerow([relative, SPELT_LABEL, "", ""])
    return expected


def test_a_drop_mixing_good_photos_and_every_bad_kind_reports_each_and_trains_the_rest(
    tmp_path: Path,
) -> None:
    root = tmp_path / "drops"
    [drop] = layout_drops(SAMPLE_DIR, root, count=1)
    outside = next(SAMPLE_DIR.rglob("*.jpg"))
    expected = add_bad_files(drop, outside)
    store = ImageStore(tmp_path / "store")

    manifest = build_manifest(
        root, scan_drops(root), store, IngestSettings.from_params(PARAMS["ingest"])
    )
    data = validate_catalog(
        manifest, tmp_path, store, ValidateParams.model_validate(PARAMS["validate"])
    )
    SequentialRunner().run(create_pipeline(), data)

    report = data.load("validation_report")
    markdown = data.load("validation_report_markdown")
    bad = manifest[manifest["source_path"].str.contains("/awkward/")].set_index("source_path")
    for relative, outcome in expected.items():
        row = bad.loc[f"{drop.name}/{relative}"]
        if outcome.startswith("quarantined"):
            assert row["status"] == QUARANTINED, relative
            assert f"{row['status']} {row['quarantine_reason']}".startswith(outcome), relative
            assert f"{drop.name}/{relative}" in markdown, relative
        else:
            assert row["status"] == "ok", relative
    assert report["success"], [c["name"] for c in report["checks"] if not c["success"]]
    assert report["normalised_labels"] == [
        {
            "drop": drop.name,
            "column": "label",
            "given": SPELT_LABEL,
            "normalised": LABEL,
            "files": len(expected),
        }
    ]
    listed = f"| {drop.name} | label | {code(SPELT_LABEL)} | {code(LABEL)} | {len(expected)} |"
    assert listed in markdown
    validated = data.load("validated_manifest")
    good = manifest[~manifest["source_path"].str.contains("/awkward/")]
    assert set(good["sha256"]) <= set(validated["sha256"])
    assert not set(validated["sha256"]) & set(bad.loc[bad["status"] == QUARANTINED, "sha256"])
