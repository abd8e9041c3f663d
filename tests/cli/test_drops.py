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
    "min_source_side": 1,
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
    nodes = {node.name: node for node in create_pipeline().nodes}
    assert nodes["ingest_drops"].inputs == ["raw_drops", "image_store", "params:ingest"]
    assert nodes["ingest_drops"].outputs == ["manifest"]
    assert nodes["record_drops_version"].inputs == ["raw_drops"]
    assert nodes["record_drops_version"].outputs == ["drops_version"]


def test_drops_history_names_each_drop_role_and_the_truth_file(tmp_path, sample_dir, capsys):
    drops = tmp_path / "drops"
    command = ["drops", str(sample_dir), str(drops), "--history", "6", "--label-noise", "0.1"]
    assert main([*command, "--noise-kind", "within_coarse", "--seed", "3"]) == 0
    output = capsys.readouterr().out
    assert f"Laid out a history of 6 drops from {sample_dir} into {drops} (seed 3)" in output
    described = [line.strip() for line in output.splitlines() if line.startswith("  drop-")]
    roles = ["base", "regular", "imbalanced", "re-delivery", "noisy", "late class"]
    for number, (line, role) in enumerate(zip(described, roles, strict=True), 1):
        assert line.startswith(f"drop-{number:03d}: ") and line.endswith(f"  [{role}]")
    truth = tmp_path / "drop-label-noise.csv"
    assert "noisy (within_coarse): " in output and f"the truth is in {truth}" in output
    assert truth.is_file() and "not inside a DVC repository" in output
    assert sorted(path.name for path in drops.iterdir()) == [f"drop-{n:03d}" for n in range(1, 7)]


def small_dataset(root: Path, make_image) -> Path:
    """A labels.csv dataset just big enough for a history: 5 classes of 12 tiny images."""
    rows = ["path,label,split,coarse_label"]
    for number in range(60):
        label, split = f"class-{number % 5}", ("train", "train", "val", "test")[number // 5 % 4]
        make_image(root / label / f"{number}.png", color=(number, 255 - number, 7), size=(8, 8))
        rows.append(f"{label}/{number}.png,{label},{split},coarse-{number % 5 // 2}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_drops_history_versions_each_drop_inside_a_dvc_repository(
    tmp_path, make_image, capsys, monkeypatch
):
    source = small_dataset(tmp_path / "dataset", make_image)
    root = tmp_path / "project"
    (root / "data" / "01_raw" / "drops").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    assert main(["drops", str(source), "--history", "4", "--label-noise", "0.1"]) == 0
    raw = root / "data" / "01_raw"
    assert sorted(path.name for path in (raw / "drops").glob("*.dvc")) == [
        f"drop-{n:03d}.dvc" for n in range(1, 5)
    ]
    assert (raw / "drop-label-noise.csv").is_file(), "the truth lies beside the drops folder"
    assert "git add data/01_raw/drops/drop-001.dvc" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--history", "4", "--count", "2"], "--history and --count exclude each other"),
        (["--label-noise", "0.1"], "--label-noise: only with --history"),
        (["--seed", "7", "--noise-kind", "random"], "--noise-kind, --seed: only with --history"),
        (["--history", "4", "--noise-kind", "within_coarse"], "needs --label-noise"),
        (["--history", "3"], "x>=4"),
        (["--history", "4", "--label-noise", "1"], "0<=x<1"),
    ],
)
def test_drops_history_options_are_checked(tmp_path, sample_dir, capsys, options, message):
    assert main(["drops", str(sample_dir), str(tmp_path / "drops"), *options]) != 0
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "drops").exists()
