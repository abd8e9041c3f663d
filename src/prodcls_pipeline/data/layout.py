"""Laying a labelled dataset out as drops: Grocery Store layout, folder tree or labels.csv."""

import csv
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from prodcls_pipeline.core.digests import sha256_file
from prodcls_pipeline.core.schema import SPLITS
from prodcls_pipeline.data.drops import LABELS_FILE, DropFormatError, scan_drop

# A drop id becomes a folder, a `.dvc` file and a lineage key: keep it a plain file name.
DROP_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

# The Grocery Store dataset layout (Klasson et al., WACV 2019).
_GROCERY_CLASSES = "classes.csv"
_GROCERY_SPLIT_FILES = {split: f"{split}.txt" for split in SPLITS}
_GROCERY_FINE_NAME = "Class Name (str)"
_GROCERY_FINE_ID = "Class ID (int)"
_GROCERY_COARSE_NAME = "Coarse Class Name (str)"
_GROCERY_COARSE_ID = "Coarse Class ID (int)"


@dataclass(frozen=True)
class SourceImage:
    """A file of a dataset to lay out, with the labels it carries into its drop."""

    relative_path: str
    label: str
    coarse_label: str
    split: str


def layout_drops(source: Path, destination: Path, count: int, prefix: str = "drop") -> list[Path]:
    """Copy the labelled images of dataset `source` into `count` new drops under `destination`.

    Each image goes to drop `int(sha256) % count`, so every drop mixes classes and the
    assignment does not depend on file order. Each drop gets a `labels.csv`
    (path,label,split,coarse_label). Reads `source` only; never overwrites an existing drop.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if not source.is_dir():
        raise FileNotFoundError(f"Source dataset {source} does not exist or is not a folder")
    names = [f"{prefix}-{index:03d}" for index in range(1, count + 1)]
    existing = [name for name in names if (destination / name).exists()]
    if existing:
        raise FileExistsError(
            f"Refusing to overwrite existing drop(s) in {destination}: {', '.join(existing)}"
        )
    images = read_source_dataset(source)
    staging = [destination / f".{name}.partial" for name in names]
    for folder in staging:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    assignments: list[list[SourceImage]] = [[] for _ in names]
    for image in tqdm(images, desc="layout", unit="file", disable=None):
        drop_index = int(sha256_file(source / image.relative_path), 16) % count
        target = staging[drop_index] / image.relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / image.relative_path, target)
        assignments[drop_index].append(image)
    drops = []
    for folder, name, assigned in zip(staging, names, assignments, strict=True):
        write_labels_csv(folder / LABELS_FILE, assigned)
        drops.append(folder.rename(destination / name))
    return drops


def land_drop(source: Path, destination: Path, name: str | None = None) -> Path:
    """Copy the drop folder `source` (folder tree or labels.csv) in as `destination/<name>`.

    The name defaults to the source folder's. The copy is checked like any drop before it
    lands, and appears whole or not at all; `source` is only read.
    """
    if not source.is_dir():
        raise FileNotFoundError(f"Drop {source} does not exist or is not a folder")
    drop_id = name or source.resolve().name
    if not DROP_ID_PATTERN.fullmatch(drop_id) or drop_id.endswith(".dvc"):
        raise DropFormatError(
            f"Drop id {drop_id!r} must be letters, digits, '.', '_' or '-' (at most 100), "
            "starting with a letter or digit, and not end in .dvc"
        )
    target = destination / drop_id
    if target.exists():
        raise FileExistsError(f"Refusing to overwrite existing drop {target}")
    if not any(not file.problem for file in scan_drop(source)):
        raise DropFormatError(f"Drop {source} holds no labelled files")
    staging = destination / f".{drop_id}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    destination.mkdir(parents=True, exist_ok=True)
    # Links stay links: ingest quarantines them, where a followed one would copy in whatever
    # it points to, outside the drop too.
    shutil.copytree(source, staging, symlinks=True, ignore=shutil.ignore_patterns(".*"))
    return staging.rename(target)


def write_labels_csv(path: Path, images: list[SourceImage]) -> None:
    """Write `labels.csv` (path,label,split,coarse_label) for `images`, sorted by path."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(("path", "label", "split", "coarse_label"))
        for image in sorted(images, key=lambda image: image.relative_path):
            writer.writerow((image.relative_path, image.label, image.split, image.coarse_label))


def read_source_dataset(source: Path) -> list[SourceImage]:
    """The labelled files of dataset `source`: Grocery Store layout, folder tree or labels.csv."""
    if (source / _GROCERY_CLASSES).is_file() and any(
        (source / name).is_file() for name in _GROCERY_SPLIT_FILES.values()
    ):
        return _read_grocery_store(source)
    images = [
        SourceImage(
            relative_path=file.source_path.split("/", 1)[1],
            label=file.label,
            coarse_label=file.coarse_label,
            split=file.pinned_split,
        )
        for file in scan_drop(source)
        if not file.problem
    ]
    if not images:
        raise DropFormatError(f"Source dataset {source} holds no labelled files")
    return images


def _read_grocery_store(source: Path) -> list[SourceImage]:
    """The Grocery Store layout: classes.csv plus `<split>.txt` lines `path, fine_id, coarse_id`."""
    with (source / _GROCERY_CLASSES).open(newline="", encoding="utf-8-sig") as stream:
        classes = list(csv.DictReader(stream))
    try:
        fine_names = {row[_GROCERY_FINE_ID].strip(): row[_GROCERY_FINE_NAME] for row in classes}
        coarse_names = {
            row[_GROCERY_COARSE_ID].strip(): row[_GROCERY_COARSE_NAME] for row in classes
        }
    except KeyError as error:
        raise DropFormatError(f"{source / _GROCERY_CLASSES}: missing column {error}") from error
    images = []
    for split, file_name in _GROCERY_SPLIT_FILES.items():
        split_file = source / file_name
        if not split_file.is_file():
            continue
        for number, line in enumerate(split_file.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                where = f"{split_file}, line {number}"
                images.append(_grocery_image(source, line, split, fine_names, coarse_names, where))
    return images


def _grocery_image(
    source: Path,
    line: str,
    split: str,
    fine_names: dict[str, str],
    coarse_names: dict[str, str],
    where: str,
) -> SourceImage:
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != 3:
        raise DropFormatError(f"{where}: expected 'path, fine_id, coarse_id', found {line!r}")
    relative_path, fine_id, coarse_id = fields
    if fine_id not in fine_names or coarse_id not in coarse_names:
        raise DropFormatError(f"{where}: class id {fine_id}/{coarse_id} is not in classes.csv")
    target = (source / relative_path).resolve()
    if not target.is_relative_to(source.resolve()) or not target.is_file():
        raise DropFormatError(f"{where}: {relative_path!r} does not exist")
    return SourceImage(relative_path, fine_names[fine_id], coarse_names[coarse_id], split)
