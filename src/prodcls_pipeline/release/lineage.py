"""Which code, data, params and dependencies made a model: hashes an auditor can check by hand.

Data hashes are the ones DVC itself records in dvc.lock and .dvc files, so a model version can be
matched to a DVC commit without re-hashing anything.
"""

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from dvc_data.hashfile.build import build
from dvc_data.hashfile.db import HashFileDB
from dvc_objects.fs.local import LocalFileSystem
from dvc_objects.fs.memory import MemoryFileSystem

from prodcls_pipeline.core.digests import sha256_file

PARAMS_FILE = "params.yaml"
DEPENDENCY_LOCK_FILE = "requirements.lock"
# DVC rewrites its own bookkeeping during the very `dvc repro` that runs the package stage, so
# counting it would mark every model dirty; the data it describes is recorded by hash instead.
DVC_BOOKKEEPING = (":(exclude)dvc.lock", ":(exclude,glob)**/*.dvc")
_GIT_TIMEOUT_S = 30


def git_state(root: Path) -> dict[str, Any]:
    """{"commit", "dirty", "is_git_repo"}; outside a repository: "" and dirty, since unknown."""
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside is None or inside.strip() != "true":
        return {"commit": "", "dirty": True, "is_git_repo": False}
    commit = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    status = _git(
        root, "status", "--porcelain", "--untracked-files=normal", "--", ".", *DVC_BOOKKEEPING
    )
    return {
        "commit": (commit or "").strip(),
        "dirty": status is None or bool(status.strip()),
        "is_git_repo": True,
    }


def dvc_dir_hash(path: Path, repo_root: Path | None = None) -> str:
    """The md5 ("….dir") DVC records for `path` as a directory dep or out.

    With `repo_root`, the repository's .dvcignore rules apply, as they do for DVC itself.
    """
    fs = LocalFileSystem()
    odb = HashFileDB(MemoryFileSystem(), "memory://prodcls-lineage")
    ignore = _dvcignore(fs, repo_root, path) if repo_root is not None else None
    _, _, tree = build(odb, str(path.resolve()), fs, "md5", dry_run=True, ignore=ignore)
    return tree.hash_info.value


def file_md5(data: bytes) -> str:
    """The md5 DVC records for a single file with these bytes."""
    return hashlib.md5(data).hexdigest()


def params_hash(params_file: Path) -> str:
    return sha256_file(params_file)


def lock_hash(lock_file: Path) -> str:
    """sha256 of the dependency lock, so an environment can be matched to a model version."""
    return sha256_file(lock_file)


def collect_lineage(root: Path, raw_drops: Path, manifest_file: bytes) -> dict[str, Any]:
    """Everything that identifies a training input, keyed as the registry tags are."""
    git = git_state(root)
    return {
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "git_repo": git["is_git_repo"],
        "raw_data_dvc_hash": dvc_dir_hash(raw_drops, repo_root=root),
        "manifest_dvc_hash": file_md5(manifest_file),
        "params_hash": params_hash(root / PARAMS_FILE),
        "lock_hash": lock_hash(root / DEPENDENCY_LOCK_FILE),
    }


def _git(root: Path, *args: str) -> str | None:
    """stdout of a git command, or None when git is missing or the command fails."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=_GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def _dvcignore(fs: LocalFileSystem, repo_root: Path, path: Path):
    """DVC's own .dvcignore filter for `repo_root`, or None when `path` lies outside it."""
    from dvc.ignore import DvcIgnoreFilter

    root = repo_root.resolve()
    if not path.resolve().is_relative_to(root):
        return None
    return DvcIgnoreFilter(fs, str(root))
