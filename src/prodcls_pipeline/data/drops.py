"""Drops of labelled photos: reading their two formats and building the manifest.

A drop is a folder under the drops root, in one of two formats:

- a folder tree `<label>/<image>`; deeper trees give the leaf folder as the fine label and its
  parent as the coarse label (`<coarse>/<label>/<image>`);
- a `labels.csv` with header `path,label[,split][,coarse_label]`, paths relative to the drop.

Every non-hidden file found is a candidate; decoding decides whether it is an image. A
symbolic link (to a file or a folder, inside the drop or out of it) is never followed and
anything but a regular file (a FIFO, a socket) is never opened: each is a candidate quarantined
with its reason, so nothing outside the drop reaches the image store and nothing is skipped
silently. A
`_READY` file marks a drop as completely copied (`prodcls watch`); it is not a candidate. Inside
a DVC repository only landed drops (those with their `<id>.dvc` file) are read: a folder still
being copied in must not reach a model.
"""

import csv
import io
import logging
import os
import stat
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

import pandas as pd
from tqdm import tqdm

from prodcls_pipeline.core.digests import sha256_bytes, sha256_file
from prodcls_pipeline.core.schema import (
    MANIFEST_COLUMNS,
    MANIFEST_DTYPES,
    PINNED_SPLITS,
    QUARANTINED,
    SPLITS,
    UNPINNED,
)
from prodcls_pipeline.data.images import ImageStore, IngestSettings, quarantine_record
from prodcls_pipeline.data.versioning import dvc_file_path, is_drop_version_file

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
REQUIRED_COLUMNS = ("path", "label")
OPTIONAL_COLUMNS = ("split", "coarse_label")
# Columns whose text is a label: normalised by `normalise_label`, not merely stripped.
LABEL_COLUMNS = ("label", "coarse_label")
# The file a sender puts in a drop when it is completely copied.
READY_MARKER = "_READY"
# Files operating systems leave in folders they show: no one's photo, skipped and counted.
OS_JUNK = frozenset({"Thumbs.db", "ehthumbs.db", "desktop.ini", "Desktop.ini"})


class DropFormatError(ValueError):
    """A drop (or a dataset to lay out as drops) that does not follow its declared format."""


@dataclass(frozen=True)
class DropFile:
    """One candidate file of a drop. `problem` says why it cannot be used even if it decodes."""

    drop: str
    source_path: str
    label: str
    coarse_label: str
    pinned_split: str
    problem: str = ""
    # False for a symbolic link or a non-regular file: ingest never opens it.
    readable: bool = True
    # The labels as the drop spelt them, where `normalise_label` changed them.
    given_label: str = ""
    given_coarse_label: str = ""


def scan_drops(root: Path, landed_only: bool = False) -> list[DropFile]:
    """Every candidate file of every drop folder under `root`, sorted by source path; with
    `landed_only`, of the drops that have their `.dvc` file only."""
    if not root.is_dir():
        raise FileNotFoundError(f"Drops folder {root} does not exist")
    files: list[DropFile] = []
    for entry in sorted(root.iterdir()):
        if _is_hidden(entry) or is_drop_version_file(entry):
            continue
        if entry.is_symlink():
            logger.warning("Ignoring %s: a symbolic link is never followed", entry)
        elif entry.is_dir() and landed_only and not dvc_file_path(entry).is_file():
            logger.warning(
                "Skipping drop %s: it is not landed yet (no %s); `prodcls land` or `dvc add` "
                "it once it is complete",
                entry.name,
                dvc_file_path(entry).name,
            )
        elif entry.is_dir():
            found = scan_drop(entry)
            if not found:
                logger.warning(
                    "Drop %s holds no files: nothing of it reaches the manifest", entry.name
                )
            files.extend(found)
        else:
            logger.warning("Ignoring %s: files must be inside a drop folder", entry)
    return sorted(files, key=lambda file: file.source_path)


def scan_drop(drop_dir: Path) -> list[DropFile]:
    """The candidate files of one drop folder, whichever its format; the hidden entries and the
    OS junk it skips are counted in the log."""
    skipped: list[Path] = []
    if (drop_dir / LABELS_FILE).is_file():
        files = _scan_labels_csv(drop_dir, skipped)
    else:
        files = _scan_folder_tree(drop_dir, skipped)
    if skipped:
        names = sorted({path.name for path in skipped})
        logger.info(
            "drop %s: skipped %d hidden or OS junk entries (%s)",
            drop_dir.name,
            len(skipped),
            ", ".join(names[:5]) + (f" and {len(names) - 5} more names" if len(names) > 5 else ""),
        )
    return files


@cache
def normalise_label(text: str) -> str:
    """`text` in Unicode NFC with its whitespace runs made one space and its ends trimmed: a
    label typed `Kiwi `, or spelt in NFD by a Mac's file system, is the class `Kiwi`. Case is
    kept: labels that differ only in case are a validation check, not a guess. Cached, so a
    label is normalised, and its change logged, once per process, not once per file."""
    normalised = " ".join(unicodedata.normalize("NFC", text).split())
    if normalised != text:
        logger.warning("label %r normalised to %r", text, normalised)
    return normalised


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _walk_files(folder: Path, skipped: list[Path]) -> Iterator[Path]:
    """Non-hidden entries below `folder` but the ready marker and the folders themselves,
    skipping hidden folders, sorted; a symbolic link is an entry, never a folder to descend.
    The hidden entries and OS junk skipped are appended to `skipped`."""
    for entry in sorted(folder.iterdir()):
        if entry.name == READY_MARKER:
            continue
        if _is_hidden(entry) or entry.name in OS_JUNK:
            skipped.append(entry)
        elif entry.is_dir() and not entry.is_symlink():
            yield from _walk_files(entry, skipped)
        else:
            yield entry


def unreadable_reason(drop_dir: Path, relative: str) -> str:
    """Why the entry at `relative` (below `drop_dir`) is no file ingest may open, or "": a
    symbolic link, itself or a folder on its way, and anything but a regular file."""
    path = drop_dir
    for part in PurePosixPath(relative).parts:
        path = path / part
        if path.is_symlink():
            return f"a symbolic link ({part!r}): links are never followed"
    if not stat.S_ISREG(path.lstat().st_mode):
        return "not a regular file"
    return ""


def _candidate(
    drop_dir: Path,
    relative: str,
    label: str = "",
    coarse_label: str = "",
    pinned_split: str = UNPINNED,
    problem: str = "",
) -> DropFile:
    """The entry at `relative` as a candidate of its drop, its labels as the drop spelt them;
    an unreadable entry's reason comes before any other `problem`."""
    unreadable = unreadable_reason(drop_dir, relative)
    normalised, normalised_coarse = normalise_label(label), normalise_label(coarse_label)
    return DropFile(
        drop=drop_dir.name,
        source_path=f"{drop_dir.name}/{relative}",
        label=normalised,
        coarse_label=normalised_coarse,
        pinned_split=pinned_split,
        problem=unreadable or problem,
        readable=not unreadable,
        given_label=label if label != normalised else "",
        given_coarse_label=coarse_label if coarse_label != normalised_coarse else "",
    )


def _scan_folder_tree(drop_dir: Path, skipped: list[Path]) -> list[DropFile]:
    files = []
    for path in _walk_files(drop_dir, skipped):
        parts = path.relative_to(drop_dir).parts
        label = parts[-2] if len(parts) >= 2 else ""
        coarse_label = parts[-3] if len(parts) >= 3 else ""
        problem = "" if normalise_label(label) else "no label: file is not inside a label folder"
        files.append(_candidate(drop_dir, "/".join(parts), label, coarse_label, problem=problem))
    return files


def _scan_labels_csv(drop_dir: Path, skipped: list[Path]) -> list[DropFile]:
    labelled = {
        relative: _candidate(
            drop_dir,
            relative,
            row["label"],
            row.get("coarse_label", ""),
            row.get("split", UNPINNED),
        )
        for relative, row in read_labels_csv(drop_dir).items()
    }
    unlisted = [
        _candidate(drop_dir, relative, problem=f"no label: file is not listed in {LABELS_FILE}")
        for relative in _relative_files(drop_dir, skipped)
        if relative not in labelled and relative != LABELS_FILE
    ]
    return [*labelled.values(), *unlisted]


def _relative_files(folder: Path, skipped: list[Path]) -> list[str]:
    return [path.relative_to(folder).as_posix() for path in _walk_files(folder, skipped)]


def read_labels_csv(drop_dir: Path) -> dict[str, dict[str, str]]:
    """The rows of `drop_dir/labels.csv` keyed by normalised relative path, checked strictly."""
    csv_path = drop_dir / LABELS_FILE
    where = f"drop {drop_dir.name!r}, {LABELS_FILE}"
    data = csv_path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DropFormatError(
            f"{where}, line {line}: not UTF-8 (byte {data[error.start]:#04x}); save the file "
            "as UTF-8"
        ) from error
    with io.StringIO(text, newline="") as stream:
        reader = csv.reader(stream)
        header = [column.strip() for column in next(reader, [])]
        _check_header(header, where)
        rows: dict[str, dict[str, str]] = {}
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            line = f"{where}, line {reader.line_num}"
            if len(fields) != len(header):
                raise DropFormatError(
                    f"{line}: expected {len(header)} fields ({','.join(header)}), "
                    f"found {len(fields)}"
                )
            # Labels keep their spelling for `normalise_label`, which reports what it changed.
            row = {
                column: field if column in LABEL_COLUMNS else field.strip()
                for column, field in zip(header, fields, strict=True)
            }
            relative = _check_row(drop_dir, row, line)
            if relative in rows:
                raise DropFormatError(f"{line}: {relative!r} is listed twice")
            rows[relative] = row
    return rows


def _check_header(header: list[str], where: str) -> None:
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise DropFormatError(
            f"{where}: missing column(s) {', '.join(missing)} "
            f"(header must be path,label[,split][,coarse_label], found {','.join(header)!r})"
        )
    unknown = [column for column in header if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown or len(set(header)) != len(header):
        raise DropFormatError(
            f"{where}: unexpected or repeated column(s) in header {','.join(header)!r} "
            f"(allowed: {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)})"
        )


def _check_row(drop_dir: Path, row: dict[str, str], line: str) -> str:
    if not row["path"]:
        raise DropFormatError(f"{line}: empty path")
    if not normalise_label(row["label"]):
        raise DropFormatError(f"{line}: empty label for {row['path']!r}")
    split = row.get("split", UNPINNED)
    if split not in PINNED_SPLITS:
        raise DropFormatError(
            f"{line}: split {split!r} is not one of {', '.join(SPLITS)} (or empty)"
        )
    # Normalised without following links: a link is judged as itself (see unreadable_reason).
    relative = PurePosixPath(os.path.normpath(row["path"].replace("\\", "/"))).as_posix()
    if PurePosixPath(relative).is_absolute() or relative.split("/")[0] == "..":
        raise DropFormatError(f"{line}: path {row['path']!r} escapes the drop folder")
    if not os.path.lexists(drop_dir / relative):
        raise DropFormatError(f"{line}: path {row['path']!r} does not exist")
    if relative == LABELS_FILE:
        raise DropFormatError(f"{line}: {LABELS_FILE} cannot label itself")
    return relative


def build_manifest(
    root: Path, files: list[DropFile], store: ImageStore, settings: IngestSettings
) -> pd.DataFrame:
    """One manifest row per file. An image is decoded only when the store has no decision for
    it that holds under `settings`: never seen, or made under a setting that since changed."""
    rows = []
    new = again = reused = 0
    for file in tqdm(files, desc="ingest", unit="file", disable=None):
        path = root / file.source_path
        # An unreadable entry is never opened: it has no content, so no size and the empty hash.
        size = path.stat().st_size if file.readable else 0
        too_large = settings.limits.size_violation(size)
        if not file.readable:
            sha256, record = sha256_bytes(b""), quarantine_record(file.problem)
        elif too_large:
            sha256, record = sha256_file(path), quarantine_record(too_large)
        else:
            data = path.read_bytes()
            sha256 = sha256_bytes(data)
            record = store.decision(sha256, settings)
            if record is not None:
                reused += 1
            else:
                again += sha256 in store
                new += sha256 not in store
                record = store.put(sha256, data, settings)
        if file.problem:
            record = {**record, "status": QUARANTINED, "quarantine_reason": file.problem}
        rows.append(_manifest_row(file, sha256, size, record))
    store.flush()
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).astype(MANIFEST_DTYPES)
    quarantined = int((manifest["status"] == QUARANTINED).sum())
    logger.info(
        "decoded %d new, %d again for changed ingest settings, reused %d from the image store; "
        "manifest of %d files, %d quarantined",
        new,
        again,
        reused,
        len(manifest),
        quarantined,
    )
    return manifest


def _manifest_row(file: DropFile, sha256: str, size: int, record: dict) -> dict:
    return {
        "sha256": sha256,
        "drop": file.drop,
        "source_path": file.source_path,
        "label": file.label,
        "coarse_label": file.coarse_label,
        "pinned_split": file.pinned_split,
        "width": record["width"],
        "height": record["height"],
        "format": record["format"],
        "bytes": size,
        "status": record["status"],
        "quarantine_reason": record["quarantine_reason"],
        "given_label": file.given_label,
        "given_coarse_label": file.given_coarse_label,
    }
