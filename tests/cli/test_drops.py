"""The `prodcls drops` command and the ingest node."""

import subprocess
import sys
from pathlib import Path

import pytest

from prodcls_pipeline.cli import main
from prodcls_pipeline.data.images import ImageStore
from prodcls_pipeline.framework.params import IngestParams
from prodcls_pipeline.pipelines.ingest.nodes import ingest_drops
from prodcls_pipeline.pipelines.ingest.pipeline import create_pipeline

INGEST_PARAMS = {
    "max_side": 64,
    "normalised_quality": 90,
    "max_source_bytes": 1_000_000,
    "max_source_pixels": 1_000_000,
    "max_aspect_ratio": 20,
}


def test_drops_command_lays_out_the_sample(tmp_path, sample_dir, capsys):
    assert main(["drops", str(sample_dir), str(tmp_path), "--count", "2"]) == 0
    output = capsys.readouterr().out
    assert f"Laid out 2 drop(s) from {sample_dir} into {tmp_path}" in output
    assert "drop-001:" in output and "12 labels" in output and "pinned train" in output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["drop-001", "drop-002"]


def test_drops_command_accepts_dest_option_and_prefix(tmp_path, sample_dir, capsys):
    assert main(["drops", str(sample_dir), "--dest", str(tmp_path), "--prefix", "wk"]) == 0
    assert [path.name for path in tmp_path.iterdir()] == ["wk-001"]


@pytest.mark.parametrize("problem", ["missing source", "existing drop", "bad labels.csv"])
def test_drops_command_errors_are_friendly(tmp_path, make_image, capsys, problem):
    source = tmp_path / "source"
    make_image(source / "x.jpg")
    (source / "labels.csv").write_text("path,label,split\nx.jpg,Lime,later\n")
    if problem == "missing source":
        source = tmp_path / "nowhere"
    elif problem == "existing drop":
        (source / "labels.csv").write_text("path,label\nx.jpg,Lime\n")
        (tmp_path / "drops" / "drop-001").mkdir(parents=True)
    assert main(["drops", str(source), str(tmp_path / "drops")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("prodcls: error: ") and "Traceback" not in error


def test_console_script_runs_without_a_traceback(tmp_path):
    prodcls = Path(sys.executable).with_name("prodcls")
    result = subprocess.run(
        [str(prodcls), "drops", str(tmp_path / "nowhere")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_ingest_node_builds_the_manifest_from_laid_out_drops(tmp_path, sample_dir):
    layout_root = tmp_path / "drops"
    assert main(["drops", str(sample_dir), str(layout_root)]) == 0
    manifest = ingest_drops(
        layout_root, ImageStore(tmp_path / "images"), IngestParams.model_validate(INGEST_PARAMS)
    )
    assert (manifest["status"] == "ok").all()
    assert set(manifest["pinned_split"]) == {"train", "val", "test"}
    assert manifest["label"].nunique() == 12
    assert ImageStore(tmp_path / "images").open(manifest["sha256"].iloc[0]).size[0] <= 64


def test_ingest_pipeline_wiring():
    (node,) = create_pipeline().nodes
    assert node.inputs == ["raw_drops", "image_store", "params:ingest"]
    assert node.outputs == ["manifest"]
