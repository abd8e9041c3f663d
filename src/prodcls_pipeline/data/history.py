"""Laying a labelled dataset out as a realistic chronological history of drops.

`layout_drops` spreads a dataset evenly; real deliveries are not even. `layout_history` gives the
pipeline what a real history throws at it, reproducibly from a seed: a big base delivery, regular
ones, a drop dominated by a few classes, a re-delivery of images already delivered, a class that
first arrives late, and optionally a drop with wrong train labels whose truth is written beside
(never inside) the drops folder, so label-quality checks can be scored against it.
"""

import bisect
import csv
import hashlib
import itertools
import shutil
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from prodcls_pipeline.core.digests import sha256_file
from prodcls_pipeline.core.schema import REQUIRED_SPLITS, TRAIN
from prodcls_pipeline.data.drops import LABELS_FILE, DropFormatError
from prodcls_pipeline.data.layout import (
    DROP_ID_PATTERN,
    SourceImage,
    read_source_dataset,
    write_labels_csv,
)

# What a drop is in the history; a drop can have two roles (a short history has few drops).
BASE = "base"
REGULAR = "regular"
IMBALANCED = "imbalanced"
NOISY = "noisy"
REDELIVERY = "re-delivery"
LATE_CLASS = "late class"
ROLES = (BASE, REGULAR, IMBALANCED, NOISY, REDELIVERY, LATE_CLASS)

RANDOM_NOISE = "random"
WITHIN_COARSE_NOISE = "within_coarse"
NOISE_KINDS = (RANDOM_NOISE, WITHIN_COARSE_NOISE)

DEFAULT_SEED = 42
# Base, imbalanced, re-delivery and late class each need a drop of their own.
MIN_HISTORY_DROPS = 4
LATE_CLASS_COUNT = 1
IMBALANCED_CLASS_COUNT = 2
# A late or dominant class needs enough images to be learnt and measured once it arrives.
MIN_CLASS_IMAGES = 10
# The base delivery is the big one: it weighs this many regular drops.
BASE_WEIGHT = 2.0
REGULAR_WEIGHT = 1.0
# Share of each dominant class's images that the imbalanced drop gets ...
IMBALANCED_SHARE = 0.6
# ... and the share of the imbalanced drop those classes make up, on average.
IMBALANCED_DOMINANT_SHARE = 0.8
# Share of the images delivered before it that the re-delivery sends again.
REDELIVERY_SHARE = 0.25
TRUTH_SUFFIX = "-label-noise.csv"
TRUTH_COLUMNS = (
    "drop",
    "path",
    "sha256",
    "given_label",
    "true_label",
    "given_coarse_label",
    "true_coarse_label",
)
# A seeded draw in [0, 1) is the first bytes of a sha256, read as an unsigned integer.
_DRAW_BYTES = 8
_DRAW_SCALE = 2 ** (8 * _DRAW_BYTES)


@dataclass(frozen=True)
class HistoryLayout:
    """What `layout_history` laid out: the drops in order, the roles of each, and the truth."""

    drops: tuple[Path, ...]
    roles: tuple[tuple[str, ...], ...]
    late_classes: tuple[str, ...]
    imbalanced_classes: tuple[str, ...]
    noise_kind: str | None
    wrong_labels: int
    truth_file: Path | None

    def with_role(self, role: str) -> tuple[Path, ...]:
        """The drops that have `role`, in order."""
        return tuple(
            drop for drop, roles in zip(self.drops, self.roles, strict=True) if role in roles
        )

    def story(self) -> list[str]:
        """What happens in the history, one line per event, for people."""
        late = ", ".join(drop.name for drop in self.with_role(LATE_CLASS))
        lines = [
            f"{LATE_CLASS} {', '.join(self.late_classes)}: absent before {late}, arrives there",
            f"{IMBALANCED}: {self.with_role(IMBALANCED)[0].name} is mostly "
            + ", ".join(self.imbalanced_classes),
            f"{REDELIVERY}: {self.with_role(REDELIVERY)[0].name} only sends again images "
            "delivered before it (same bytes, same labels)",
        ]
        if self.truth_file is not None:
            lines.append(
                f"{NOISY} ({self.noise_kind}): {self.wrong_labels} wrong train labels in "
                f"{self.with_role(NOISY)[0].name}; the truth is in {self.truth_file}"
            )
        return lines


@dataclass(frozen=True)
class _Plan:
    """Which drop (0-based) plays which role; `noisy` is None without label noise."""

    count: int
    imbalanced: int
    redelivery: int
    late: int
    noisy: int | None

    def roles(self) -> tuple[tuple[str, ...], ...]:
        where = (
            (BASE, 0),
            (IMBALANCED, self.imbalanced),
            (NOISY, self.noisy),
            (REDELIVERY, self.redelivery),
            (LATE_CLASS, self.late),
        )
        return tuple(
            tuple(role for role, index in where if index == drop) or (REGULAR,)
            for drop in range(self.count)
        )


@dataclass(frozen=True)
class _Entry:
    """One row of a drop: the dataset's file (its true labels), its sha256, the labels given."""

    source: SourceImage
    sha256: str
    given: SourceImage


def layout_history(
    source: Path,
    destination: Path,
    count: int,
    *,
    label_noise: float = 0.0,
    noise_kind: str = RANDOM_NOISE,
    seed: int = DEFAULT_SEED,
    prefix: str = "drop",
    truth_file: Path | None = None,
) -> HistoryLayout:
    """Copy dataset `source` into `count` chronological drops `<prefix>-NNN` in `destination`.

    Every image lands in exactly one drop other than the re-delivery, which only sends again
    (same bytes, same labels) images delivered before it. With `label_noise` > 0 one drop gets
    that fraction of its train labels wrong (`noise_kind` random or within_coarse) and the truth
    goes to `truth_file` (default `destination.parent / <prefix>-label-noise.csv`). The layout
    depends on the seed and the images' hashes only. Reads `source` only; never overwrites.
    """
    _check_arguments(count, label_noise, noise_kind, prefix)
    if not source.is_dir():
        raise FileNotFoundError(f"Source dataset {source} does not exist or is not a folder")
    names = [f"{prefix}-{index:03d}" for index in range(1, count + 1)]
    truth = _truth_path(destination, prefix, label_noise, truth_file)
    _refuse_overwrite(destination, names, truth)
    images = read_source_dataset(source)
    digests = [
        sha256_file(source / image.relative_path)
        for image in tqdm(images, desc="hash", unit="file", disable=None)
    ]
    plan = _plan(count, noisy=truth is not None)
    late, dominant = _pick_classes(source, images, seed)
    drops = _assign(images, digests, plan, late, dominant, seed)
    wrong: list[_Entry] = []
    if plan.noisy is not None:
        drops[plan.noisy], wrong = _add_noise(
            drops[plan.noisy], names[plan.noisy], label_noise, noise_kind, late, images, seed
        )
    drops[plan.redelivery] = _redeliver(drops[: plan.redelivery], seed)
    empty = [name for name, entries in zip(names, drops, strict=True) if not entries]
    if empty:
        raise DropFormatError(
            f"Source dataset {source} is too small for {count} drops: {', '.join(empty)} empty"
        )
    paths = _write_drops(source, destination, names, drops)
    if truth is not None:
        _write_truth(truth, names[plan.noisy], wrong)
    return HistoryLayout(
        drops=tuple(paths),
        roles=plan.roles(),
        late_classes=late,
        imbalanced_classes=dominant,
        noise_kind=noise_kind if truth is not None else None,
        wrong_labels=len(wrong),
        truth_file=truth,
    )


def _check_arguments(count: int, label_noise: float, noise_kind: str, prefix: str) -> None:
    if count < MIN_HISTORY_DROPS:
        raise ValueError(
            f"A history needs at least {MIN_HISTORY_DROPS} drops (base, imbalanced, "
            f"re-delivery, late class), got {count}"
        )
    if not 0 <= label_noise < 1:
        raise ValueError(f"label_noise must be a fraction in [0, 1), got {label_noise}")
    if noise_kind not in NOISE_KINDS:
        raise ValueError(f"noise_kind must be one of {', '.join(NOISE_KINDS)}, got {noise_kind!r}")
    if not DROP_ID_PATTERN.fullmatch(f"{prefix}-001"):
        raise DropFormatError(
            f"Prefix {prefix!r} does not make a valid drop id: use letters, digits, '.', '_', '-'"
        )


def _truth_path(
    destination: Path, prefix: str, label_noise: float, truth_file: Path | None
) -> Path | None:
    """Where the truth of the wrong labels goes: outside the drops folder, which ingest scans."""
    if not label_noise:
        if truth_file is not None:
            raise ValueError("truth_file needs label_noise > 0: without noise there is no truth")
        return None
    truth = truth_file or destination.parent / f"{prefix}{TRUTH_SUFFIX}"
    if truth.resolve().is_relative_to(destination.resolve()):
        raise ValueError(f"The truth file {truth} must lie outside the drops folder {destination}")
    return truth


def _refuse_overwrite(destination: Path, names: list[str], truth: Path | None) -> None:
    existing = [name for name in names if (destination / name).exists()]
    if existing:
        raise FileExistsError(
            f"Refusing to overwrite existing drop(s) in {destination}: {', '.join(existing)}"
        )
    if truth is not None and truth.exists():
        raise FileExistsError(f"Refusing to overwrite existing truth file {truth}")


def _plan(count: int, noisy: bool) -> _Plan:
    """Re-delivery mid-history, the imbalanced drop just before it, the late class last; the
    noise goes to the last drop with no other role, or shares the imbalanced one."""
    redelivery = count // 2
    imbalanced = redelivery - 1
    late = count - 1
    free = [index for index in range(1, late) if index not in (imbalanced, redelivery)]
    noisy_index = (free[-1] if free else imbalanced) if noisy else None
    return _Plan(count, imbalanced, redelivery, late, noisy_index)


def _draw(seed: int, purpose: str, key: str) -> float:
    """A uniform number in [0, 1) fixed by seed, purpose and key: reproducible, order-free."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{key}".encode()).digest()
    return int.from_bytes(digest[:_DRAW_BYTES], "big") / _DRAW_SCALE


def _pick_classes(
    source: Path, images: list[SourceImage], seed: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The late classes and the imbalanced drop's dominant classes, drawn by seed among the
    classes with enough images (and, where the dataset pins splits, train and test images)."""
    sizes = Counter(image.label for image in images)
    splits: dict[str, set[str]] = defaultdict(set)
    for image in images:
        splits[image.label].add(image.split)
    pinned = any(image.split for image in images)
    needed = LATE_CLASS_COUNT + IMBALANCED_CLASS_COUNT
    if len(sizes) <= needed:
        raise DropFormatError(
            f"Source dataset {source} has {len(sizes)} classes; a history needs at least "
            f"{needed + 1} (late, dominant and the rest)"
        )
    candidates = sorted(
        (
            label
            for label, size in sizes.items()
            if size >= MIN_CLASS_IMAGES and (not pinned or set(REQUIRED_SPLITS) <= splits[label])
        ),
        key=lambda label: (_draw(seed, "class", label), label),
    )
    if len(candidates) < needed:
        raise DropFormatError(
            f"Source dataset {source}: only {len(candidates)} class(es) have {MIN_CLASS_IMAGES} "
            f"images or more; a history needs {needed}"
        )
    return tuple(candidates[:LATE_CLASS_COUNT]), tuple(candidates[LATE_CLASS_COUNT:needed])


def _assign(
    images: list[SourceImage],
    digests: list[str],
    plan: _Plan,
    late: tuple[str, ...],
    dominant: tuple[str, ...],
    seed: int,
) -> list[list[_Entry]]:
    """Every image to one delivering drop: late classes to the late drop, most of the dominant
    classes to the imbalanced drop, the rest by weight (the re-delivery gets none)."""
    weights = [
        0.0 if index == plan.redelivery else BASE_WEIGHT if index == 0 else REGULAR_WEIGHT
        for index in range(plan.count)
    ]
    weights[plan.imbalanced] = 0.0
    dominant_weights = list(weights)
    other_weights = list(weights)
    other_weights[plan.imbalanced] = _minority_weight(images, late, dominant, sum(weights))
    drops: list[list[_Entry]] = [[] for _ in range(plan.count)]
    for image, digest in zip(images, digests, strict=True):
        if image.label in late:
            index = plan.late
        elif image.label in dominant:
            if _draw(seed, "imbalanced", digest) < IMBALANCED_SHARE:
                index = plan.imbalanced
            else:
                index = _weighted_choice(_draw(seed, "drop", digest), dominant_weights)
        else:
            index = _weighted_choice(_draw(seed, "drop", digest), other_weights)
        drops[index].append(_Entry(image, digest, image))
    return drops


def _minority_weight(
    images: list[SourceImage], late: tuple[str, ...], dominant: tuple[str, ...], rest: float
) -> float:
    """The imbalanced drop's weight for other classes, so that the dominant classes make up
    IMBALANCED_DOMINANT_SHARE of it on average, whatever the dataset's class sizes."""
    from_dominant = IMBALANCED_SHARE * sum(image.label in dominant for image in images)
    others = sum(image.label not in dominant and image.label not in late for image in images)
    wanted = from_dominant * (1 - IMBALANCED_DOMINANT_SHARE) / IMBALANCED_DOMINANT_SHARE
    # Never a larger share of the other classes than of the dominant ones.
    share = min(wanted / others, IMBALANCED_SHARE) if others else 0.0
    # An image goes to the imbalanced drop with probability weight / (weight + rest) = share.
    return share * rest / (1 - share)


def _weighted_choice(draw: float, weights: Sequence[float]) -> int:
    """The index `draw` (in [0, 1)) falls on when [0, 1) is cut in proportion to `weights`."""
    bounds = list(itertools.accumulate(weights))
    index = bisect.bisect_right(bounds, draw * bounds[-1])
    return min(index, max(i for i, weight in enumerate(weights) if weight > 0))


def _add_noise(
    entries: list[_Entry],
    drop: str,
    label_noise: float,
    noise_kind: str,
    late: tuple[str, ...],
    images: list[SourceImage],
    seed: int,
) -> tuple[list[_Entry], list[_Entry]]:
    """`entries` with `label_noise` of the train labels wrong, and the wrong entries."""
    coarse_of: dict[str, str] = {}
    for image in sorted(images, key=lambda image: image.relative_path):
        coarse_of.setdefault(image.label, image.coarse_label)
    train = [entry for entry in entries if entry.source.split == TRAIN]
    if not train:
        raise DropFormatError(
            f"{drop} has no train-split images to mislabel: label noise needs a dataset that "
            "pins its splits (the Grocery Store layout, or a labels.csv with a split column)"
        )
    wanted = max(1, round(label_noise * len(train)))
    eligible = [
        (entry, targets)
        for entry in train
        if (targets := _wrong_labels(entry.source, noise_kind, coarse_of, late))
    ]
    if len(eligible) < wanted:
        raise DropFormatError(
            f"{drop}: {label_noise:.0%} label noise ({noise_kind}) needs {wanted} wrong train "
            f"labels, but only {len(eligible)} of its {len(train)} train images can take one"
        )
    eligible.sort(key=lambda pair: (_draw(seed, "noise", _key(pair[0])), _key(pair[0])))
    wrong = {}
    for entry, targets in eligible[:wanted]:
        label = targets[int(_draw(seed, "noise target", _key(entry)) * len(targets))]
        given = replace(entry.source, label=label, coarse_label=coarse_of[label])
        wrong[entry.source.relative_path] = replace(entry, given=given)
    noisy = [wrong.get(entry.source.relative_path, entry) for entry in entries]
    return noisy, sorted(wrong.values(), key=lambda entry: entry.source.relative_path)


def _wrong_labels(
    image: SourceImage, noise_kind: str, coarse_of: dict[str, str], late: tuple[str, ...]
) -> list[str]:
    """The labels `image` may wrongly get: any other class, or one of its coarse class; never
    a late class, which has not arrived yet (the noisy drop comes before it)."""
    labels = [label for label in coarse_of if label != image.label and label not in late]
    if noise_kind == WITHIN_COARSE_NOISE:
        labels = [
            label
            for label in labels
            if image.coarse_label and coarse_of[label] == image.coarse_label
        ]
    return sorted(labels)


def _key(entry: _Entry) -> str:
    # Bytes and path: two copies of the same bytes are still two files.
    return f"{entry.sha256}:{entry.source.relative_path}"


def _redeliver(earlier: list[list[_Entry]], seed: int) -> list[_Entry]:
    """A seeded share of what was delivered before, as delivered. Wrongly labelled images are
    left out, so only the noisy drop holds wrong labels and the truth file covers them all."""
    pool = [entry for drop in earlier for entry in drop if entry.given == entry.source]
    pool.sort(key=lambda entry: (_draw(seed, "re-delivery", _key(entry)), _key(entry)))
    return pool[: max(1, round(REDELIVERY_SHARE * len(pool)))]


def _write_drops(
    source: Path, destination: Path, names: list[str], drops: list[list[_Entry]]
) -> list[Path]:
    """Stage every drop in a hidden `.<name>.partial` folder, then rename: whole or not at all."""
    staging = [destination / f".{name}.partial" for name in names]
    for folder in staging:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    copies = sum(len(entries) for entries in drops)
    with tqdm(total=copies, desc="history", unit="file", disable=None) as progress:
        for folder, entries in zip(staging, drops, strict=True):
            for entry in entries:
                target = folder / entry.given.relative_path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / entry.source.relative_path, target)
                progress.update()
            write_labels_csv(folder / LABELS_FILE, [entry.given for entry in entries])
    return [folder.rename(destination / name) for folder, name in zip(staging, names, strict=True)]


def _write_truth(path: Path, drop: str, wrong: list[_Entry]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        for entry in wrong:
            writer.writerow(
                (
                    drop,
                    entry.given.relative_path,
                    entry.sha256,
                    entry.given.label,
                    entry.source.label,
                    entry.given.coarse_label,
                    entry.source.coarse_label,
                )
            )
    partial.rename(path)
