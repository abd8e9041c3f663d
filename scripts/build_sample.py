"""Build sample/grocery-store-mini: a small, same-layout subset of the Grocery Store dataset.

Usage: python scripts/build_sample.py [--source DIR] [--dest DIR] [--overwrite]

Keeps 12 classes (all with official val images): per class 24 train and 12 test images evenly
spaced over the sorted file list, and every val image; downscaled so the shorter side is 256 px.
"""

import argparse
import csv
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageOps

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = Path("/work/shared/datasets/grocery-store")
DEFAULT_DEST = REPO_ROOT / "sample" / "grocery-store-mini"

CLASSES = (
    "Golden-Delicious",
    "Granny-Smith",
    "Banana",
    "Kiwi",
    "Lemon",
    "Lime",
    "Watermelon",
    "Bravo-Orange-Juice",
    "God-Morgon-Orange-Juice",
    "Arla-Standard-Milk",
    "Carrots",
    "Red-Bell-Pepper",
)
IMAGES_PER_CLASS = {"train": 24, "val": None, "test": 12}  # None: keep every image
SHORTER_SIDE = 256
JPEG_QUALITY = 85
MAX_TOTAL_BYTES = 15 * 1024 * 1024
CLASSES_FILE = "classes.csv"
FINE_NAME, FINE_ID = "Class Name (str)", "Class ID (int)"

README = """# Grocery Store mini (sample)

A small subset of the Grocery Store Dataset, in the same layout as the original, bundled so the
pipeline and its tests run without the full dataset.

Source: Marcus Klasson, Cheng Zhang, Hedvig Kjellström, "A Hierarchical Grocery Store Image
Dataset with Visual and Semantic Labels", IEEE Winter Conference on Applications of Computer
Vision (WACV), 2019 (arXiv:1901.00711), https://github.com/marcusklasson/GroceryStoreDataset.
License: MIT (see `LICENSE`, copied from the original); keep the license and this citation with
any copy.

```bibtex
@inproceedings{{klasson2019hierarchical,
  title={{A Hierarchical Grocery Store Image Dataset with Visual and Semantic Labels}},
  author={{Klasson, Marcus and Zhang, Cheng and Kjellstr{{\\"o}}m, Hedvig}},
  booktitle={{IEEE Winter Conference on Applications of Computer Vision (WACV)}},
  year={{2019}}
}}
```

## How this subset was made

Built by `scripts/build_sample.py` from the natural images of the original:

- {count} classes: {classes};
- per class: {train} train and {test} test images, evenly spaced over the sorted file list, and
  every official val image; {total_images} images in all ({per_split});
- each image made upright, downscaled so its shorter side is {side} px (bicubic), saved as
  JPEG quality {quality} without EXIF;
- `train.txt`, `val.txt`, `test.txt` keep the original line format
  (`<relative path>, <fine id>, <coarse id>`) and ids; `classes.csv` keeps the original header
  and the rows of the chosen classes.
"""


def evenly_spaced(items: list[str], count: int | None) -> list[str]:
    if count is None or len(items) <= count:
        return items
    return [items[index * len(items) // count] for index in range(count)]


def read_classes(source: Path) -> tuple[list[str], list[list[str]], dict[str, str]]:
    """The header, the chosen classes' rows, and fine id → fine name of the chosen classes."""
    with (source / CLASSES_FILE).open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    header, body = rows[0], rows[1:]
    name_column, id_column = header.index(FINE_NAME), header.index(FINE_ID)
    chosen = [row for row in body if row[name_column] in CLASSES]
    missing = set(CLASSES) - {row[name_column] for row in chosen}
    if missing:
        raise SystemExit(f"Classes missing from {source / CLASSES_FILE}: {sorted(missing)}")
    return header, chosen, {row[id_column]: row[name_column] for row in chosen}


def select_lines(source: Path, split: str, class_names: dict[str, str]) -> list[str]:
    """The lines of `<split>.txt` kept for the sample, in their original order."""
    lines = (source / f"{split}.txt").read_text(encoding="utf-8").splitlines()
    by_class: dict[str, list[str]] = {}
    for line in lines:
        path, fine_id, _ = (field.strip() for field in line.split(","))
        if fine_id in class_names:
            by_class.setdefault(fine_id, []).append(path)
    kept = {
        path
        for paths in by_class.values()
        for path in evenly_spaced(sorted(paths), IMAGES_PER_CLASS[split])
    }
    return [line for line in lines if line.split(",")[0].strip() in kept]


def shrink(source_path: Path, target_path: Path) -> None:
    with Image.open(source_path) as original:
        image = ImageOps.exif_transpose(original).convert("RGB")
    scale = SHORTER_SIDE / min(image.size)
    if scale < 1:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.BICUBIC)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    image.save(target_path, format="JPEG", quality=JPEG_QUALITY)


def build_sample(source: Path, dest: Path) -> int:
    header, class_rows, class_names = read_classes(source)
    dest.mkdir(parents=True)
    counts = {}
    for split in IMAGES_PER_CLASS:
        lines = select_lines(source, split, class_names)
        for line in lines:
            relative = line.split(",")[0].strip()
            shrink(source / relative, dest / relative)
        (dest / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines), "utf-8")
        counts[split] = len(lines)
    with (dest / CLASSES_FILE).open("w", newline="", encoding="utf-8") as stream:
        csv.writer(stream, lineterminator="\n").writerows([header, *class_rows])
    shutil.copyfile(source / "LICENSE", dest / "LICENSE")
    (dest / "README.md").write_text(
        README.format(
            count=len(CLASSES),
            classes=", ".join(CLASSES),
            train=IMAGES_PER_CLASS["train"],
            test=IMAGES_PER_CLASS["test"],
            total_images=sum(counts.values()),
            per_split=", ".join(f"{number} {split}" for split, number in counts.items()),
            side=SHORTER_SIDE,
            quality=JPEG_QUALITY,
        ),
        encoding="utf-8",
    )
    return sum(path.stat().st_size for path in dest.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing sample")
    args = parser.parse_args()
    if args.dest.exists():
        if not args.overwrite:
            sys.exit(f"{args.dest} exists; pass --overwrite to rebuild it")
        shutil.rmtree(args.dest)
    total = build_sample(args.source, args.dest)
    print(f"Wrote {args.dest}: {total / 1e6:.2f} MB")
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"Sample is {total} bytes, over the {MAX_TOTAL_BYTES}-byte budget")


if __name__ == "__main__":
    main()
