"""Lineage hashes must be the ones DVC and git themselves report."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prodcls_pipeline.core.tracking import DATABASE_FILE, STORE_FOLDER
from prodcls_pipeline.data.versioning import drops_version, dvc_dir_hash
from prodcls_pipeline.release.lineage import (
    DEPENDENCY_LOCK_FILE,
    PARAMS_FILE,
    collect_lineage,
    file_md5,
    git_diff,
    git_state,
    lock_hash,
    params_hash,
    patched_files,
)


def _run(cwd: Path, *command: str) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_CEILING_DIRECTORIES": str(cwd.parent)}
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=env)


def _git(cwd: Path, *args: str) -> None:
    _run(cwd, "git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args)


def _dvc(cwd: Path, *args: str) -> None:
    _run(cwd, sys.executable, "-m", "dvc", *args)


def _recorded_md5(dvc_file: Path) -> str:
    return yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    _git(root, "init", "-q")
    return root


def test_hashes_equal_what_dvc_records(repo: Path) -> None:
    _dvc(repo, "init", "-q")
    drops = repo / "drops"
    (drops / "d1" / "apple").mkdir(parents=True)
    (drops / "d1" / "apple" / "1.jpg").write_bytes(bytes(range(256)) * 9)
    (drops / "d1" / "apple" / "2.jpg").write_bytes(b"\xff\xd8 second image")
    (drops / "d2").mkdir()
    (drops / "d2" / "labels.csv").write_text("file,label\r\n1.jpg,pear\r\n")
    (drops / "d1" / ".DS_Store").write_bytes(b"finder noise")
    (repo / ".dvcignore").write_text(".DS_Store\n")
    manifest = repo / "manifest.parquet"
    manifest.write_bytes(b"PAR1 not really parquet")

    _dvc(repo, "add", "-q", "drops", "manifest.parquet")

    assert dvc_dir_hash(drops, repo_root=repo) == _recorded_md5(repo / "drops.dvc")
    assert dvc_dir_hash(drops, repo_root=repo).endswith(".dir")
    assert file_md5(manifest.read_bytes()) == _recorded_md5(repo / "manifest.parquet.dvc")


def test_dvc_dir_hash_changes_with_content(tmp_path: Path) -> None:
    folder = tmp_path / "drops"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"a")
    before = dvc_dir_hash(folder)
    (folder / "b.jpg").write_bytes(b"b")
    assert dvc_dir_hash(folder) != before


def test_git_state_clean_then_dirty(repo: Path) -> None:
    (repo / ".gitignore").write_text(f"{STORE_FOLDER}/\n")
    (repo / "code.py").write_text("x = 1\n")
    (repo / "dvc.lock").write_text("schema: '2.0'\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "initial")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()

    (repo / STORE_FOLDER).mkdir()
    (repo / STORE_FOLDER / DATABASE_FILE).write_bytes(b"ignored by git")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    drops = repo / "data" / "01_raw" / "drops"
    drops.mkdir(parents=True)
    # what `dvc add` writes beside a drop it caches
    (drops / ".gitignore").write_text("/drop-001\n")
    (drops / "drop-001.dvc").write_text("outs: []\n")
    assert git_state(repo) == {"commit": head, "dirty": False, "is_git_repo": True}

    (repo / "code.py").write_text("x = 2\n")
    assert git_state(repo) == {"commit": head, "dirty": True, "is_git_repo": True}


def test_git_state_never_rewrites_the_index(repo: Path) -> None:
    """A stage killed while git holds .git/index.lock would leave the lock for the user's next
    commit: reading the state must not refresh the index."""
    (repo / "code.py").write_text("x = 1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "initial")
    index = repo / ".git" / "index"
    before = index.stat()
    # Same content, newer mtime: a plain `git status` would refresh and rewrite the index.
    os.utime(repo / "code.py", ns=(before.st_mtime_ns + 10**9, before.st_mtime_ns + 10**9))

    assert git_state(repo)["dirty"] is False
    after = index.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_the_recorded_diff_rebuilds_the_dirty_tree_from_its_commit(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "code.py").write_text("x = 1\n")
    (repo / "dvc.lock").write_text("schema: '2.0'\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "initial")
    assert git_diff(repo) == ""

    (repo / "code.py").write_text("x = 2\n")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "new.py").write_text("y = 'untracked'\n")
    (repo / "blob.bin").write_bytes(bytes(range(256)))
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    diff = git_diff(repo)

    assert sorted(patched_files(diff)) == ["blob.bin", "code.py", "pkg/new.py"]
    copy = tmp_path / "copy"
    _git(repo, "worktree", "add", "-q", "--detach", str(copy), "HEAD")
    subprocess.run(["git", "apply", "--binary", "-"], cwd=copy, input=diff.encode(), check=True)
    for name in ("code.py", "pkg/new.py", "blob.bin"):
        assert (copy / name).read_bytes() == (repo / name).read_bytes(), name
    assert (copy / "dvc.lock").read_text() == "schema: '2.0'\n"


def test_untracked_file_is_dirty(repo: Path) -> None:
    (repo / "new_module.py").write_text("y = 1\n")
    assert git_state(repo) == {"commit": "", "dirty": True, "is_git_repo": True}


def test_git_state_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_state(tmp_path) == {"commit": "", "dirty": True, "is_git_repo": False}


def test_collect_lineage_hashes_params_lock_and_data(repo: Path) -> None:
    (repo / PARAMS_FILE).write_text("seed: 42\n")
    (repo / DEPENDENCY_LOCK_FILE).write_text("torch==2.14.1\n")
    drops = repo / "data" / "drops"
    drops.mkdir(parents=True)
    (drops / "a.jpg").write_bytes(b"a")

    lineage = collect_lineage(repo, drops_version(drops), b"manifest bytes", b"splits bytes")

    assert lineage["params_hash"] == hashlib.sha256(b"seed: 42\n").hexdigest()
    assert lineage["params_hash"] == params_hash(repo / PARAMS_FILE)
    assert lineage["lock_hash"] == lock_hash(repo / DEPENDENCY_LOCK_FILE)
    assert lineage["manifest_dvc_hash"] == hashlib.md5(b"manifest bytes").hexdigest()
    assert lineage["raw_data_dvc_hash"] == dvc_dir_hash(drops)
    assert lineage["splits_dvc_hash"] == hashlib.md5(b"splits bytes").hexdigest()
    assert lineage["git_repo"] is True
