"""Re-make a model version from its lineage record alone, away from the working tree, and say
metric by metric whether the result matches what was recorded.

In a temporary folder: a git worktree at the version's commit plus its recorded uncommitted
diff (the code), the recorded params.yaml (the params), each drop pulled by its DVC hash from
the project's DVC cache, or its default remote when the cache lacks it (the data). Then
`dvc repro <target>` runs there with its own, empty DVC cache and its own MLflow store, so no
run cache can stand in for a real run and nothing is registered in the project's registry.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from prodcls_pipeline.audit.errors import ReproductionError
from prodcls_pipeline.audit.versions import AuditedVersion
from prodcls_pipeline.core.digests import sha256_file
from prodcls_pipeline.core.tracking import TRACKING_URI_ENV, sqlite_tracking_uri
from prodcls_pipeline.data.versioning import (
    DVC_FILE_SUFFIX,
    DvcError,
    dvc_dir_hash,
    dvc_file_path,
    dvc_file_text,
    run_dvc,
)
from prodcls_pipeline.release.lineage import PARAMS_FILE, file_md5

# Where the restored project keeps what is compared: read from its own catalog, which is the
# version's, not today's.
CATALOG_FILE = Path("conf/base/catalog.yml")
RAW_DROPS, METRICS, PER_CLASS = "raw_drops", "metrics", "per_class_metrics"
MANIFEST, SPLITS = "validated_manifest", "splits"
DEFAULT_TARGET = "evaluate"
# The project's own DVC cache, read as a remote: a DVC 3 cache and a local remote share a layout.
CACHE_REMOTE = "prodcls-project-cache"
_RUNNING_STAGE = re.compile(r"Running stage '([^']+)'")
_GIT_TIMEOUT_S = 120


def reproduce_version(
    version: AuditedVersion,
    project_root: Path,
    target: str = DEFAULT_TARGET,
    keep: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Restore `version`'s code, params and drops in a temporary folder, run `dvc repro target`
    there, and compare every recorded metric (and the data hashes) with the reproduced ones.

    `on_stage` is called with each stage's name as DVC starts it. The folder is removed
    afterwards unless `keep`.
    """
    record = version.require_record()
    code = record["code"]
    if not code["git_commit"]:
        raise ReproductionError(
            f"v{version.number} was trained outside a git commit: its code cannot be restored"
        )
    project_root = project_root.resolve()
    workdir = Path(tempfile.mkdtemp(prefix=f"prodcls-reproduce-v{version.number}-"))
    worktree = workdir / "project"
    started = time.perf_counter()
    try:
        _git(
            project_root,
            "worktree",
            "add",
            "--detach",
            "--quiet",
            str(worktree),
            code["git_commit"],
        )
        code_detail = _apply_diff(worktree, code["diff"])
        params_detail = _restore_params(worktree, record["params"])
        drops = _restore_drops(worktree, project_root, record["data"]["drops"])
        _run_pipeline(worktree, workdir, target, on_stage)
        checks = _checks(worktree, record)
        result = {
            "model_name": version.model_name,
            "version": version.number,
            "target": target,
            "git_commit": code["git_commit"],
            "code_detail": code_detail,
            "params_detail": params_detail,
            "drops": drops,
            "checks": checks,
            "all_equal": all(row["equal"] for row in checks)
            and all(drop["restored"] for drop in drops),
            "wall_s": round(time.perf_counter() - started, 1),
            "workdir": str(workdir) if keep else "a temporary folder (removed)",
        }
    finally:
        if not keep:
            _git(project_root, "worktree", "remove", "--force", str(worktree), check=False)
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def _apply_diff(worktree: Path, diff: str) -> str:
    if not diff:
        return "clean commit: no uncommitted changes were recorded"
    result = subprocess.run(
        ["git", "-C", str(worktree), "apply", "--binary", "--whitespace=nowarn", "-"],
        input=diff,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ReproductionError(f"The recorded diff does not apply: {result.stderr.strip()}")
    return f"recorded uncommitted diff applied ({diff.count('diff --git ')} file(s))"


def _restore_params(worktree: Path, params: dict[str, Any]) -> str:
    path = worktree / PARAMS_FILE
    path.write_text(params["file"], encoding="utf-8")
    if sha256_file(path) != params["hash"]:
        raise ReproductionError(f"The recorded {PARAMS_FILE} does not hash to {params['hash']}")
    return f"sha256 {params['hash']} matches"


def _restore_drops(
    worktree: Path, project_root: Path, drops: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Exactly the recorded drops, each pulled by its hash; a drop the commit knew but the
    version did not use is left out."""
    folder = _catalog_path(worktree, RAW_DROPS)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"*{DVC_FILE_SUFFIX}"):
        stale.unlink()
    targets = []
    for drop in drops:
        dvc_file = dvc_file_path(folder / drop["drop"])
        dvc_file.write_text(dvc_file_text(drop["drop"], drop["dvc_hash"]), encoding="utf-8")
        targets.append(str(dvc_file.relative_to(worktree)))
    run_dvc(worktree, "remote", "add", "--local", CACHE_REMOTE, str(project_root / ".dvc/cache"))
    try:
        run_dvc(worktree, "pull", "--remote", CACHE_REMOTE, *targets)
    except DvcError:
        # Not in this machine's cache: the default remote, if the project configures one.
        try:
            run_dvc(worktree, "pull", *targets)
        except DvcError as error:
            raise ReproductionError(
                f"The drops could not be restored by hash from {project_root / '.dvc/cache'} "
                f"or the project's DVC remote: {error}"
            ) from error
    restored = []
    for drop in drops:
        found = dvc_dir_hash(folder / drop["drop"], repo_root=worktree)
        equal = found == drop["dvc_hash"]
        restored.append(
            {
                "drop": drop["drop"],
                "dvc_hash": drop["dvc_hash"],
                "restored": equal,
                "check": "restored byte for byte" if equal else f"content hashes to {found}",
            }
        )
    return restored


def _run_pipeline(
    worktree: Path, workdir: Path, target: str, on_stage: Callable[[str], None] | None
) -> None:
    """`dvc repro target` with the worktree's code first on the path and a private MLflow store."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(worktree / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        TRACKING_URI_ENV: sqlite_tracking_uri(workdir),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--no-run-cache", target],
        cwd=worktree,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail[-40:], line.rstrip()]
        if (match := _RUNNING_STAGE.search(line)) and on_stage is not None:
            on_stage(match[1])
    if process.wait() != 0:
        raise ReproductionError("dvc repro failed in the restored project:\n" + "\n".join(tail))


def _checks(worktree: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Data hashes first (the same images, labels and splits), then every recorded metric,
    overall and per class."""
    data = record["data"]
    rows = [
        _row(
            "validated manifest DVC hash",
            data["manifest_dvc_hash"],
            file_md5(_catalog_path(worktree, MANIFEST).read_bytes()),
        ),
        _row(
            "splits DVC hash",
            data["splits_dvc_hash"],
            file_md5(_catalog_path(worktree, SPLITS).read_bytes()),
        ),
    ]
    metrics = json.loads(_catalog_path(worktree, METRICS).read_text(encoding="utf-8"))
    rows += [_row(key, value, metrics.get(key)) for key, value in record["metrics"].items()]
    per_class = json.loads(_catalog_path(worktree, PER_CLASS).read_text(encoding="utf-8"))
    for label, values in record["per_class"].items():
        rows += [
            _row(f"{label} {name}", value, per_class.get(label, {}).get(name))
            for name, value in values.items()
        ]
    return rows


def _catalog_path(worktree: Path, dataset: str) -> Path:
    entry = yaml.safe_load((worktree / CATALOG_FILE).read_text(encoding="utf-8"))[dataset]
    return worktree / entry.get("filepath", entry.get("path"))


def _row(name: str, recorded: Any, reproduced: Any) -> dict[str, Any]:
    return {
        "name": name,
        "recorded": recorded,
        "reproduced": reproduced,
        "equal": recorded == reproduced,
    }


def _git(root: Path, *args: str, check: bool = True) -> None:
    result = subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=_GIT_TIMEOUT_S,
    )
    if check and result.returncode != 0:
        raise ReproductionError(f"git {args[0]} failed: {result.stderr.strip()}")
