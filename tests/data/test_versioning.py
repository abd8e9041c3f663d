"""Drops as DVC data versions: `dvc add` caches them, their `.dvc` files name them, and
`dvc checkout` brings a deleted drop back byte for byte."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prodcls_pipeline.data.drops import scan_drops
from prodcls_pipeline.data.versioning import (
    drops_version,
    dvc_dir_hash,
    dvc_file_path,
    dvc_file_text,
    find_dvc_root,
    read_drop_version,
    run_dvc,
    track_drops,
)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    return root


@pytest.fixture
def drop(repo: Path, make_image) -> Path:
    folder = repo / "data" / "01_raw" / "drops" / "week-48"
    make_image(folder / "Lime" / "a.jpg", color=(10, 200, 10))
    make_image(folder / "Lime" / "b.jpg", color=(20, 180, 20))
    make_image(folder / "Banana" / "c.png", color=(230, 220, 40))
    return folder


def test_tracking_a_drop_writes_its_dvc_file_and_caches_its_files(repo: Path, drop: Path) -> None:
    [version] = track_drops([drop], repo)

    assert dvc_file_path(drop).is_file()
    assert version.tracked and version.drop == "week-48" and version.files == 3
    assert version.dvc_hash == dvc_dir_hash(drop, repo_root=repo)
    assert version.dvc_hash.endswith(".dir")
    assert read_drop_version(drop) == version
    cached = {path.name for path in (repo / ".dvc" / "cache").rglob("*") if path.is_file()}
    assert len(cached) == 4  # three files and the directory listing


def test_a_deleted_drop_comes_back_byte_for_byte_from_dvc_checkout(repo: Path, drop: Path) -> None:
    track_drops([drop], repo)
    before = tree_digest(drop)

    shutil.rmtree(drop)
    run_dvc(repo, "checkout", str(dvc_file_path(drop).relative_to(repo)))

    assert tree_digest(drop) == before


def test_a_dvc_file_written_from_a_hash_alone_restores_the_drop(repo: Path, drop: Path) -> None:
    version = track_drops([drop], repo)[0]
    before = tree_digest(drop)
    shutil.rmtree(drop)
    dvc_file_path(drop).write_text(dvc_file_text(drop.name, version.dvc_hash))

    run_dvc(repo, "checkout", str(dvc_file_path(drop).relative_to(repo)))

    assert tree_digest(drop) == before


def test_a_copied_in_drop_is_reported_untracked_with_the_hash_dvc_would_give(
    repo: Path, drop: Path
) -> None:
    version = read_drop_version(drop)
    assert not version.tracked and version.dvc_file == ""
    assert version.dvc_hash == dvc_dir_hash(drop, repo_root=repo)
    [tracked] = track_drops([drop], repo)
    assert tracked.dvc_hash == version.dvc_hash


def test_drops_version_names_the_folder_as_dvc_lock_does_and_each_drop(
    repo: Path, drop: Path
) -> None:
    [tracked] = track_drops([drop], repo)
    (repo / "dvc.yaml").write_text(
        "stages:\n  list:\n    cmd: ls data/01_raw/drops > listing.txt\n"
        "    deps: [data/01_raw/drops]\n    outs: [listing.txt]\n"
    )
    run_dvc(repo, "repro", "--quiet")
    [locked] = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["list"]["deps"]

    version = drops_version(drop.parent, repo_root=repo)

    assert version == {"raw_data_dvc_hash": locked["md5"], "drops": [tracked.to_dict()]}


def test_scanning_drops_skips_their_dvc_files(repo: Path, drop: Path, caplog) -> None:
    track_drops([drop], repo)
    (drop.parent / "stray.txt").write_text("not in a drop")

    files = scan_drops(drop.parent)

    assert {file.source_path for file in files} == {
        "week-48/Banana/c.png",
        "week-48/Lime/a.jpg",
        "week-48/Lime/b.jpg",
    }
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "stray.txt" in warned and ".dvc" not in warned


def test_find_dvc_root(repo: Path, tmp_path: Path) -> None:
    assert find_dvc_root(repo / "data" / "01_raw") == repo.resolve()
    assert find_dvc_root(tmp_path) is None
