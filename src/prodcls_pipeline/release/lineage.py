"""Which code, data, params and dependencies made a model: hashes an auditor can check by hand,
and the self-contained lineage record kept with each model version.

Data hashes are the ones DVC itself records in dvc.lock and .dvc files, so a model version can be
matched to a DVC commit without re-hashing anything, and its drops restored from the DVC cache by
hash alone (see `prodcls audit reproduce`).
"""

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from prodcls_pipeline.core.digests import sha256_file
from prodcls_pipeline.core.schema import OK, SPLITS

PARAMS_FILE = "params.yaml"
DEPENDENCY_LOCK_FILE = "requirements.lock"
DVC_LOCK_FILE = "dvc.lock"
# DVC rewrites its own bookkeeping, and the stages their reports (committed beside dvc.lock for
# `dvc metrics diff`), during the very `dvc repro` that runs the package stage, so counting them
# would mark every model dirty; the data they describe is recorded by hash instead.
REPORTS_DIR = "data/08_reporting"
# What `dvc add` and `dvc repro` write (.dvc files, the .gitignore beside the drops, dvc.lock)
# and the committed reports: a version's data, not its code.
DVC_BOOKKEEPING = (
    ":(exclude)dvc.lock",
    ":(exclude,glob)**/*.dvc",
    ":(exclude)data/01_raw/drops/.gitignore",
    f":(exclude){REPORTS_DIR}",
)
_GIT_TIMEOUT_S = 30
_DIFF_HEADER = "diff --git a/"
# `git diff --no-index` exits 1 when the files differ, which is the point of running it.
_DIFF_STATUSES = frozenset({0, 1})

# The lineage record of version N lives in its run under lineage/v<N>/: these files.
LINEAGE_ARTIFACT_PATH = "lineage"
RECORD_FILE = "record.json"
IMAGES_FILE = "images.parquet"
PREDICTIONS_FILE = "test_predictions.parquet"
RECORD_SCHEMA_VERSION = 1
IMAGE_COLUMNS = ("sha256", "label", "coarse_label", "split", "drop", "source_path")


def version_artifact_path(version: int) -> str:
    return f"{LINEAGE_ARTIFACT_PATH}/v{version}"


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


def git_diff(root: Path) -> str:
    """What the working tree adds to HEAD, as one patch `git apply` takes: changed tracked files
    and untracked (not ignored) ones, DVC bookkeeping left out as in `git_state`."""
    tracked = _git(root, "diff", "--binary", "HEAD", "--", ".", *DVC_BOOKKEEPING) or ""
    untracked = _git(
        root, "ls-files", "-z", "--others", "--exclude-standard", "--", ".", *DVC_BOOKKEEPING
    )
    patches = [tracked]
    for name in filter(None, (untracked or "").split("\0")):
        if not name.endswith(".dvc"):
            added = ("diff", "--binary", "--no-index", "--", "/dev/null", name)
            patches.append(_git(root, *added, ok=_DIFF_STATUSES) or "")
    return "".join(patches)


def file_md5(data: bytes) -> str:
    """The md5 DVC records for a single file with these bytes."""
    return hashlib.md5(data).hexdigest()


def params_hash(params_file: Path) -> str:
    return sha256_file(params_file)


def lock_hash(lock_file: Path) -> str:
    """sha256 of the dependency lock, so an environment can be matched to a model version."""
    return sha256_file(lock_file)


def collect_lineage(
    root: Path, drops_version: dict[str, Any], manifest_file: bytes, splits_file: bytes
) -> dict[str, Any]:
    """Everything that identifies a training input, keyed as the registry tags are, with each
    drop's own DVC version (`drops_version`, as ingest recorded it)."""
    git = git_state(root)
    return {
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "git_repo": git["is_git_repo"],
        "raw_data_dvc_hash": drops_version["raw_data_dvc_hash"],
        "drops": drops_version["drops"],
        "manifest_dvc_hash": file_md5(manifest_file),
        "splits_dvc_hash": file_md5(splits_file),
        "params_hash": params_hash(root / PARAMS_FILE),
        "lock_hash": lock_hash(root / DEPENDENCY_LOCK_FILE),
    }


def image_table(splits: pd.DataFrame, validated_manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per image the version learnt from or was tested on: its label, split, and the
    first drop file (by path) that holds those bytes."""
    usable = validated_manifest.loc[validated_manifest["status"] == OK]
    sources = (
        usable.loc[:, ["sha256", "drop", "source_path"]]
        .sort_values("source_path")
        .drop_duplicates("sha256")
    )
    table = splits.merge(sources, on="sha256", how="left").fillna({"drop": "", "source_path": ""})
    return table.loc[:, list(IMAGE_COLUMNS)].sort_values("sha256").reset_index(drop=True)


def lineage_record(
    registration: dict[str, Any],
    package_lineage: dict[str, Any],
    promotion: dict[str, Any],
    validation_report: dict[str, Any],
    metrics: dict[str, Any],
    per_class: dict[str, dict[str, Any]],
    images: pd.DataFrame,
    parameters: dict[str, Any],
    root: Path,
    warm_start: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The self-contained record of one model version: which data (each drop's DVC version, the
    manifest's and splits' hashes, images per split), code (commit, and the diff itself when the
    tree was dirty), params (the file and the values the run used), environment (lock hash),
    dvc.lock, the parent champion (the one the gate compared against) and the warm start (the
    version training started from, if any: the classifier's `warm_start` record), the gate
    verdicts with the validation warnings and the reviewer's decisions applied, and the test
    metrics."""
    champion = promotion.get("champion")
    return {
        "schema_version": RECORD_SCHEMA_VERSION,
        "model_name": registration["model_name"],
        "version": registration["version"],
        "run_id": registration["run_id"],
        "variant": package_lineage.get("variant"),
        "backbone": package_lineage.get("backbone"),
        "model_sha256": package_lineage.get("model_sha256"),
        "parent_champion": champion["version"] if champion else None,
        "warm_start": warm_start,
        "code": {
            "git_commit": package_lineage["git_commit"],
            "git_dirty": package_lineage["git_dirty"],
            "git_repo": package_lineage["git_repo"],
            "diff": git_diff(root) if package_lineage["git_dirty"] else "",
        },
        "data": {
            "drops": package_lineage["drops"],
            "raw_data_dvc_hash": package_lineage["raw_data_dvc_hash"],
            "manifest_dvc_hash": package_lineage["manifest_dvc_hash"],
            "splits_dvc_hash": package_lineage["splits_dvc_hash"],
            "images_per_split": {split: int((images["split"] == split).sum()) for split in SPLITS},
            "classes": sorted(images["label"].unique().tolist()),
        },
        "params": {
            "hash": package_lineage["params_hash"],
            "file": (root / PARAMS_FILE).read_text(encoding="utf-8"),
            "values": parameters,
        },
        "environment": {"lock_hash": package_lineage["lock_hash"]},
        "dvc_lock": _read_text(root / DVC_LOCK_FILE),
        "gates": {
            "validation": {
                "success": bool(validation_report["success"]),
                "failed_checks": [
                    check["name"] for check in validation_report["checks"] if not check["success"]
                ],
                "warnings": [
                    check["name"] for check in validation_report["checks"] if check.get("warning")
                ],
                # The reviewer's decisions this data was built with (the review file's rows
                # that matched an image): the audit shows them beside the verdict.
                "review_decisions": validation_report.get("review", {}).get("applied", []),
            },
            "promotion": {
                "verdict": promotion["verdict"],
                "reason": promotion["reason"],
                "champion_version": champion["version"] if champion else None,
            },
        },
        "metrics": metrics,
        "per_class": per_class,
    }


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _git(root: Path, *args: str, ok: frozenset[int] = frozenset({0})) -> str | None:
    """stdout of a git command, or None when git is missing or it exits with a status not `ok`."""
    try:
        result = subprocess.run(
            # Paths as they are, not octal-quoted, so a recorded patch names its files plainly.
            # No optional locks: `git status` would refresh the index under .git/index.lock, and
            # a stage killed meanwhile would leave that lock behind for every later git command.
            ["git", "--no-optional-locks", "-c", "core.quotePath=false", "-C", str(root), *args],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            check=False,
            timeout=_GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode in ok else None


def changed_files(root: Path, commit_a: str, commit_b: str) -> list[dict[str, str]] | None:
    """Files that differ between two commits, as {status, path}, DVC bookkeeping and reports
    left out (their data is compared by hash); None when git cannot tell (not a repository, or
    a commit it does not hold)."""
    output = _git(
        root,
        "diff",
        "--name-status",
        "--no-renames",
        commit_a,
        commit_b,
        "--",
        ".",
        *DVC_BOOKKEEPING,
    )
    if output is None:
        return None
    rows = [line.split("\t", 1) for line in output.splitlines() if "\t" in line]
    return [{"status": status, "path": path} for status, path in rows]


def patched_files(diff: str) -> list[str]:
    """The files a recorded `git_diff` patch touches. Its headers read `diff --git a/P b/P`
    (no renames, paths unquoted), so P is the first half of what follows `a/`."""
    files = []
    for line in diff.splitlines():
        if line.startswith(_DIFF_HEADER):
            paths = line[len(_DIFF_HEADER) :]
            files.append(paths[: (len(paths) - len(" b/")) // 2])
    return files
