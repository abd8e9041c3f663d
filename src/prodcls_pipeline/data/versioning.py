"""Drops as DVC data versions: each drop folder is `dvc add`ed, so its files live in the DVC
cache (and on any remote) and its `<drop>.dvc` file, committed by git, names its exact content.

The hashes are the ones DVC itself computes, so a model version's lineage can be matched to a
`.dvc` file or a `dvc.lock` entry by eye, and a drop can be restored from its hash alone.
"""

import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

DVC_FILE_SUFFIX = ".dvc"
DVC_DIR = ".dvc"
# DVC's own marker for a directory hash: the md5 of the listing of (path, md5) pairs.
DIR_HASH_SUFFIX = ".dir"
_DVC_TIMEOUT_S = 3600


class DvcError(RuntimeError):
    """A DVC command that failed; the message carries DVC's own last lines."""


@dataclass(frozen=True)
class DropVersion:
    """One drop's data version: its DVC directory hash, size, and the `.dvc` file naming it.

    `tracked` is False for a drop folder that was copied in without `dvc add`: its hash is
    computed the way DVC would, but nothing in the DVC cache guarantees it can be restored.
    """

    drop: str
    dvc_hash: str
    files: int
    bytes: int
    tracked: bool
    dvc_file: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dvc_file_path(drop_dir: Path) -> Path:
    """`data/01_raw/drops/<id>.dvc` for the drop folder `data/01_raw/drops/<id>`."""
    return drop_dir.with_name(drop_dir.name + DVC_FILE_SUFFIX)


def is_drop_version_file(path: Path) -> bool:
    """Whether `path` is the `.dvc` file of a drop folder beside it (not a stray file)."""
    return path.suffix == DVC_FILE_SUFFIX and path.with_suffix("").is_dir()


def find_dvc_root(path: Path) -> Path | None:
    """The DVC repository `path` lies in (the nearest folder with a `.dvc` directory), if any."""
    for folder in [path.resolve(), *path.resolve().parents]:
        if (folder / DVC_DIR).is_dir():
            return folder
    return None


def track_drops(drop_dirs: list[Path], repo_root: Path) -> list[DropVersion]:
    """`dvc add` each drop folder (one DVC run for all), then read back the versions it wrote."""
    if not drop_dirs:
        return []
    targets = [str(drop.resolve().relative_to(repo_root.resolve())) for drop in drop_dirs]
    run_dvc(repo_root, "add", "--quiet", *targets)
    return [read_drop_version(drop) for drop in drop_dirs]


def read_drop_version(drop_dir: Path) -> DropVersion:
    """The drop's version from its `.dvc` file, or computed when it has none (untracked)."""
    dvc_file = dvc_file_path(drop_dir)
    if not dvc_file.is_file():
        files = [path for path in drop_dir.rglob("*") if path.is_file()]
        return DropVersion(
            drop=drop_dir.name,
            dvc_hash=dvc_dir_hash(drop_dir, repo_root=find_dvc_root(drop_dir)),
            files=len(files),
            bytes=sum(path.stat().st_size for path in files),
            tracked=False,
        )
    text = dvc_file.read_text(encoding="utf-8")
    [out] = yaml.safe_load(text)["outs"]
    return DropVersion(
        drop=drop_dir.name,
        dvc_hash=out["md5"],
        files=int(out.get("nfiles", 0)),
        bytes=int(out.get("size", 0)),
        tracked=True,
        dvc_file=text,
    )


def drop_versions(drops_root: Path) -> list[DropVersion]:
    """The version of every drop folder under `drops_root`, by drop name."""
    return [
        read_drop_version(entry)
        for entry in sorted(drops_root.iterdir())
        if entry.is_dir() and not entry.name.startswith(".")
    ]


def drops_version(drops_root: Path, repo_root: Path | None = None) -> dict[str, Any]:
    """The DVC hash of the whole drops folder (as dvc.lock records it for ingest) and the
    version of each drop: what a model's lineage names as its raw data."""
    return {
        "raw_data_dvc_hash": dvc_dir_hash(drops_root, repo_root=repo_root),
        "drops": [version.to_dict() for version in drop_versions(drops_root)],
    }


def dvc_file_text(drop: str, dvc_hash: str) -> str:
    """A `.dvc` file that makes `dvc checkout` restore drop folder `drop` with this hash."""
    return yaml.safe_dump({"outs": [{"md5": dvc_hash, "path": drop, "hash": "md5"}]})


def dvc_dir_hash(path: Path, repo_root: Path | None = None) -> str:
    """The md5 ("….dir") DVC records for `path` as a directory dep or out.

    With `repo_root`, the repository's .dvcignore rules apply, as they do for DVC itself.
    """
    # Imported here: scanning drops (ingest) must not pay for DVC's imports.
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem
    from dvc_objects.fs.memory import MemoryFileSystem

    fs = LocalFileSystem()
    odb = HashFileDB(MemoryFileSystem(), "memory://prodcls-lineage")
    ignore = _dvcignore(fs, repo_root, path) if repo_root is not None else None
    _, _, tree = build(odb, str(path.resolve()), fs, "md5", dry_run=True, ignore=ignore)
    return tree.hash_info.value


def run_dvc(repo_root: Path, *args: str) -> str:
    """Run DVC of this environment in `repo_root`; its stdout, or DvcError with its last lines."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=False,
        timeout=_DVC_TIMEOUT_S,
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise DvcError(f"dvc {' '.join(args[:1])} failed in {repo_root}: " + " ".join(tail))
    return result.stdout


def _dvcignore(fs, repo_root: Path, path: Path):
    """DVC's own .dvcignore filter for `repo_root`, or None when `path` lies outside it."""
    from dvc.ignore import DvcIgnoreFilter

    root = repo_root.resolve()
    if not path.resolve().is_relative_to(root):
        return None
    return DvcIgnoreFilter(fs, str(root))
