#!/usr/bin/env python
"""How many flipped labels the validate stage's label-quality check finds, and where
near-duplicates start.

Label noise: per seed and noise kind, the dataset is laid out as the chronological history
`prodcls drops --history` makes, with `--fraction` of one drop's train labels wrong (`random`: to
any other fine class; `within_coarse`: to another fine class of the same coarse class, the harder
case: a Granny-Smith called a Pink-Lady) and the truth in its side file. As when that drop lands,
`validation.label_quality.find_suspects` runs over every image delivered up to it (each once, with
the labels the drops give) with the `validate.label_quality` settings of params.yaml, and the
noisy drop's suspects are scored against the truth file; the rows pool the seeds.

Near-duplicates: `--copies` seeded images re-delivered as other files (downscaled to 80 % and
saved as JPEG quality 90, a mild re-export, and quality 60, a harsh one), each copy's cosine with
its original's embedding; and for every image of the dataset, its highest cosine with any other
image. The duplicate threshold should lie between the two.

The histories are scored once with every flag cleanlab raises (`max_given_probability` 1) and
the suspects then kept at each cap of `GIVEN_PROBABILITY_SWEEP` (the check applies the cap after
cleanlab, so this equals a run per cap): `results/label_noise_cap.json` rows `
max_given_probability, noise, flipped, flagged, precision, recall`; the main rows are the sweep's
at the params.yaml cap.

`--set KEY=VALUE` overrides a `validate.label_quality` setting (say `--set filter_by=
prune_by_noise_rate`) to compare choices; such a run prints its table but writes no rows, so the
results file always holds what params.yaml's settings measure.

Embeddings are the frozen backbone's, cached by sha256 and view in benchmarks/.cache/embeddings
(shared with `drift.py`).

    python -m benchmarks.label_noise [--dataset PATH] [--fraction 0.05] [--seeds 0 1 2 3]
        [--copies 200] [--set KEY=VALUE ...]
"""

import argparse
import csv
import io
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from benchmarks.common import (
    DEFAULT_DATASET,
    ConfigurationError,
    dataset_folder,
    dataset_label,
    format_table,
    read_params,
    write_results,
)
from benchmarks.drift import DEFAULT_BATCH_SIZE, DatasetImage, Embedder, hashed
from prodcls_pipeline.core.digests import sha256_file
from prodcls_pipeline.core.numbers import round_metric
from prodcls_pipeline.core.rules import RuleParamsError
from prodcls_pipeline.core.schema import TEST, TRAIN, VAL
from prodcls_pipeline.data import (
    NOISE_KINDS,
    NOISY,
    RANDOM_NOISE,
    TRUTH_COLUMNS,
    layout_history,
    read_source_dataset,
    scan_drop,
)
from prodcls_pipeline.validation.duplicates import (
    DuplicateSettings,
    label_conflicts,
    near_duplicates,
    split_leaks,
)
from prodcls_pipeline.validation.label_quality import (
    LabelQualitySettings,
    capped_suspects,
    drop_suspects,
    find_suspects,
    out_of_fold_probabilities,
)

BENCHMARK = "label_noise"
FIELDS = ("noise", "flipped", "flagged", "precision", "recall")
RESULT_KEY = ("noise",)
CAP_BENCHMARK = "label_noise_cap"
CAP_FIELDS = ("max_given_probability", *FIELDS)
CAP_KEY = ("max_given_probability", "noise")
# Caps on the probe's probability of a suspect's given label; 1 keeps every cleanlab flag.
GIVEN_PROBABILITY_SWEEP = (1.0, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
DUPLICATES_BENCHMARK = "near_duplicates"
DUPLICATE_FIELDS = (
    "comparison",
    "images",
    "min",
    "p01",
    "p05",
    "median",
    "p95",
    "p99",
    "max",
    "share_at_threshold",
)
DUPLICATE_KEY = ("comparison",)
NEAREST_OTHER = "nearest_other_image"

DEFAULT_FRACTION = 0.05
DEFAULT_SEEDS = (0, 1, 2, 3)
DEFAULT_COPIES = 200
# Drops of the history each seed lays out; one of them is the noisy drop.
HISTORY_DROPS = 6
# What the task asks of the check on random flips.
MIN_PRECISION = 0.8
MIN_RECALL = 0.8
# Thresholds at which the copies caught and the images paired with another photo are printed.
SWEEP_THRESHOLDS = (0.93, 0.95, 0.96, 0.97, 0.98, 0.99)
COPY_PREFIX = "copy-"
QUANTILES = {"p01": 0.01, "p05": 0.05, "median": 0.5, "p95": 0.95, "p99": 0.99}
# Rows of the similarity matrix computed at once for the nearest-other search.
SIMILARITY_BLOCK_ROWS = 1024


@dataclass(frozen=True)
class LabelledImage:
    """A dataset image with its sha256, fine label and official split."""

    image: DatasetImage
    split: str

    @property
    def sha256(self) -> str:
        return self.image.sha256

    @property
    def label(self) -> str:
        return self.image.label


def read_dataset(dataset: Path) -> list[LabelledImage]:
    """Every image of `dataset` once (by sha256), train first, then val, then test; an image
    delivered in two splits keeps the earlier one."""
    sources = read_source_dataset(dataset)
    images: list[LabelledImage] = []
    for split in (TRAIN, VAL, TEST):
        lines = [(dataset / s.relative_path, s.label) for s in sources if s.split == split]
        for image in hashed(lines, exclude={image.sha256 for image in images}):
            images.append(LabelledImage(image, split))
    return images


@dataclass(frozen=True)
class Copy:
    """A re-delivered copy of an image: downscaled by `scale`, saved as JPEG at `quality`."""

    quality: int
    scale: float

    @property
    def name(self) -> str:
        return f"jpeg{self.quality}-x{self.scale:g}"

    @property
    def view(self) -> str:
        return f"reencode-{self.name}"

    @property
    def comparison(self) -> str:
        return f"copy_{self.name}_vs_original"

    def apply(self, image: Image.Image) -> Image.Image:
        size = (round(image.width * self.scale), round(image.height * self.scale))
        buffer = io.BytesIO()
        image.resize(size, Image.Resampling.BICUBIC).save(
            buffer, format="JPEG", quality=self.quality
        )
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")


# Names carry the strengths, so a changed one is a new cache view and a new table row.
COPIES = (Copy(quality=90, scale=0.8), Copy(quality=60, scale=0.8))


def label_quality_settings(
    params: dict[str, Any], overrides: Sequence[str] = ()
) -> LabelQualitySettings:
    """The `validate.label_quality` settings, with `overrides` ("key=value", YAML values)."""
    changes = {}
    for override in overrides:
        key, separator, value = override.partition("=")
        if not separator:
            raise ConfigurationError(f"--set wants KEY=VALUE, got {override!r}")
        changes[key.strip()] = yaml.safe_load(value)
    section = params["validate"]["label_quality"]
    return LabelQualitySettings.from_params({**section, **changes}, seed=params["seed"])


def duplicate_threshold(params: dict[str, Any]) -> float:
    return DuplicateSettings.from_params(params["validate"]["duplicates"]).threshold


@dataclass(frozen=True)
class NoisyHistory:
    """What validate sees when a history's noisy drop lands, and the truth about it."""

    sha256s: list[str]
    labels: list[str]
    noisy_drop: list[str]
    wrong: set[str]


def noisy_history(
    dataset: Path, folder: Path, fraction: float, noise: str, seed: int
) -> NoisyHistory:
    """Lay `dataset` out in `folder` as `prodcls drops --history` does, with `fraction` of the
    noisy drop's train labels wrong; every image delivered up to that drop (first delivery
    wins), the noisy drop's images and the truth file's wrong ones."""
    truth_file = folder / "label-noise.csv"
    layout = layout_history(
        dataset,
        folder / "drops",
        HISTORY_DROPS,
        label_noise=fraction,
        noise_kind=noise,
        seed=seed,
        truth_file=truth_file,
    )
    [noisy] = layout.with_role(NOISY)
    labels: dict[str, str] = {}
    noisy_drop: list[str] = []
    for drop in layout.drops[: layout.drops.index(noisy) + 1]:
        for file in scan_drop(drop):
            digest = sha256_file(drop.parent / file.source_path)
            labels.setdefault(digest, file.label)
            if drop == noisy:
                noisy_drop.append(digest)
    with truth_file.open(newline="", encoding="utf-8") as stream:
        wrong = {row[TRUTH_COLUMNS[2]] for row in csv.DictReader(stream)}
    return NoisyHistory(list(labels), list(labels.values()), noisy_drop, wrong)


@dataclass(frozen=True)
class Score:
    flipped: int
    flagged: int
    found: int

    @property
    def precision(self) -> float | None:
        return self.found / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.found / self.flipped if self.flipped else None

    def __add__(self, other: "Score") -> "Score":
        return Score(
            self.flipped + other.flipped, self.flagged + other.flagged, self.found + other.found
        )


def score_drop(history: NoisyHistory, suspects: Any, cap: float) -> Score:
    """The noisy drop's suspects whose given label the probe gives at most `cap`, against the
    truth file's wrong labels."""
    flagged = set(drop_suspects(capped_suspects(suspects, cap), history.noisy_drop)["sha256"])
    return Score(len(history.wrong), len(flagged), len(history.wrong & flagged))


def noise_rows(scores: dict[str, Score], **columns: Any) -> list[dict[str, Any]]:
    return [
        {
            **columns,
            "noise": noise,
            "flipped": score.flipped,
            "flagged": score.flagged,
            "precision": None if score.precision is None else round_metric(score.precision),
            "recall": None if score.recall is None else round_metric(score.recall),
        }
        for noise, score in scores.items()
    ]


def target_line(rows: list[dict[str, Any]]) -> str:
    [row] = [row for row in rows if row["noise"] == RANDOM_NOISE]
    precision, recall = row["precision"] or 0.0, row["recall"] or 0.0
    met = precision >= MIN_PRECISION and recall >= MIN_RECALL
    return (
        f"{'met' if met else 'MISSED':6}  random flips: precision {precision:.2f}, recall "
        f"{recall:.2f} (target precision >= {MIN_PRECISION} at recall >= {MIN_RECALL})"
    )


def run_label_noise(
    dataset: Path,
    images: list[LabelledImage],
    embeddings: np.ndarray,
    settings: LabelQualitySettings,
    fraction: float,
    seeds: Sequence[int],
) -> dict[float, list[dict[str, Any]]]:
    """Rows per cap of `GIVEN_PROBABILITY_SWEEP` and of `settings`."""
    caps = sorted({*GIVEN_PROBABILITY_SWEEP, settings.max_given_probability}, reverse=True)
    uncapped = replace(settings, max_given_probability=1.0)
    row_of = {image.sha256: row for row, image in enumerate(images)}
    sha256s = [image.sha256 for image in images]
    labels = [image.label for image in images]
    started = time.perf_counter()
    clean = find_suspects(sha256s, embeddings, labels, settings)
    seconds = time.perf_counter() - started
    probabilities = out_of_fold_probabilities(embeddings, labels, settings)
    label_array = np.asarray(labels, dtype=object)
    top1 = np.mean(
        probabilities.argmax(axis=1) == np.searchsorted(np.unique(label_array), label_array)
    )
    print(
        f"Clean labels: probe out-of-fold top-1 {top1:.4f}; {len(clean)} suspects among all "
        f"{len(images)} images ({seconds:.0f} s per find_suspects)"
    )
    scores = {cap: {noise: Score(0, 0, 0) for noise in NOISE_KINDS} for cap in caps}
    runs = [(seed, noise) for seed in seeds for noise in NOISE_KINDS]
    for seed, noise in tqdm(runs, desc="history + find_suspects", unit="run"):
        with tempfile.TemporaryDirectory(prefix="prodcls-label-noise-") as folder:
            history = noisy_history(dataset, Path(folder), fraction, noise, seed)
        rows = [row_of[sha256] for sha256 in history.sha256s]
        suspects = find_suspects(history.sha256s, embeddings[rows], history.labels, uncapped)
        for cap in caps:
            scores[cap][noise] += score_drop(history, suspects, cap)
        score = score_drop(history, suspects, settings.max_given_probability)
        tqdm.write(
            f"  seed {seed}  {noise:13}  images {len(rows)}  noisy drop "
            f"{len(history.noisy_drop)}  wrong {score.flipped}  flagged {score.flagged}  "
            f"found {score.found}"
        )
    return {
        cap: noise_rows(by_noise, max_given_probability=cap) for cap, by_noise in scores.items()
    }


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    rows = embeddings.astype(np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def nearest_other_similarity(embeddings: np.ndarray) -> np.ndarray:
    """Each row's highest cosine with any other row."""
    unit = unit_rows(embeddings)
    nearest = np.empty(len(unit), dtype=np.float32)
    for start in range(0, len(unit), SIMILARITY_BLOCK_ROWS):
        block = unit[start : start + SIMILARITY_BLOCK_ROWS] @ unit.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf
        nearest[start : start + len(block)] = block.max(axis=1)
    return nearest


def distribution_row(comparison: str, values: np.ndarray, threshold: float) -> dict[str, Any]:
    return {
        "comparison": comparison,
        "images": len(values),
        "min": round_metric(values.min()),
        **{name: round_metric(np.quantile(values, q)) for name, q in QUANTILES.items()},
        "max": round_metric(values.max()),
        "share_at_threshold": round_metric(np.mean(values >= threshold)),
    }


def run_near_duplicates(
    images: list[LabelledImage],
    embeddings: np.ndarray,
    embedder: Embedder,
    copies: int,
    threshold: float,
    seed: int,
) -> list[dict[str, Any]]:
    sha256s = [image.sha256 for image in images]
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), size=copies, replace=False))
    nearest = nearest_other_similarity(embeddings)
    similarities = {}
    for copy in COPIES:
        copy_embeddings = embedder.embed([sha256s[row] for row in chosen], copy.view, copy.apply)
        similarities[copy] = np.sum(
            unit_rows(copy_embeddings) * unit_rows(embeddings[chosen]), axis=1
        )
        # The module itself at the threshold, over the dataset and the copies together.
        copy_names = [COPY_PREFIX + sha256s[row] for row in chosen]
        pairs = near_duplicates(
            [*sha256s, *copy_names], np.vstack([embeddings, copy_embeddings]), threshold
        )
        own = pairs["sha256_b"] == COPY_PREFIX + pairs["sha256_a"]
        print(
            f"near_duplicates at {threshold}: {int(own.sum())} of {copies} {copy.name} copies "
            "paired with their original"
        )
    originals = near_duplicates(sha256s, embeddings, threshold)
    conflicts = label_conflicts(originals, {image.sha256: image.label for image in images})
    leaks = split_leaks(originals, {image.sha256: image.split for image in images})
    print(
        f"near_duplicates at {threshold}: {len(originals)} pairs of distinct dataset images "
        f"among {len(images)} ({len(conflicts)} with different labels, {len(leaks)} straddling "
        "test and train/val)"
    )
    print("\nthreshold  " + "  ".join(f"{copy.name} caught" for copy in COPIES) + "  images paired")
    for value in SWEEP_THRESHOLDS:
        caught = "  ".join(
            f"{np.mean(similarities[copy] >= value):>{len(copy.name) + 7}.3f}" for copy in COPIES
        )
        print(f"{value:<9}  {caught}  {np.mean(nearest >= value):>13.4f}")
    return [
        *(distribution_row(copy.comparison, similarities[copy], threshold) for copy in COPIES),
        distribution_row(NEAREST_OTHER, nearest, threshold),
    ]


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fraction",
        type=float,
        default=DEFAULT_FRACTION,
        help="share of the drop's labels flipped (%(default)s)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(DEFAULT_SEEDS),
        help="one drop and its flips per seed (%(default)s)",
    )
    parser.add_argument(
        "--copies",
        type=int,
        default=DEFAULT_COPIES,
        help="images re-encoded for the near-duplicate table; 0 skips it (%(default)s)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a validate.label_quality setting; the rows are then not written",
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="embedding batch (%(default)s)"
    )
    # No project copy is made here, so --keep means nothing.
    parser.add_argument(
        "--dataset",
        type=Path,
        default=DEFAULT_DATASET,
        help="Grocery Store layout dataset (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    params = read_params()
    threshold = duplicate_threshold(params)
    if not 0 < args.fraction < 1:
        print(f"error: --fraction must be in (0, 1), got {args.fraction}", file=sys.stderr)
        return 2
    try:
        settings = label_quality_settings(params, args.overrides)
        dataset = dataset_folder(args.dataset)
    except (ConfigurationError, RuleParamsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    images = read_dataset(dataset)
    if args.copies > len(images):
        print(f"error: --copies {args.copies} > {len(images)} images", file=sys.stderr)
        return 2
    embedder = Embedder([image.image for image in images], args.batch_size)
    embeddings = embedder.embed([image.sha256 for image in images])
    try:
        rows_by_cap = run_label_noise(
            dataset, images, embeddings, settings, args.fraction, args.seeds
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    cap_rows = [row for rows in rows_by_cap.values() for row in rows]
    print("\nSuspects kept at each cap on the given label's probability (seeds pooled)")
    print(format_table(cap_rows, CAP_FIELDS))
    rows = [
        {field: row[field] for field in FIELDS}
        for row in rows_by_cap[settings.max_given_probability]
    ]
    print(
        f"\nLabel noise on {dataset_label(dataset)}: per seed a history of {HISTORY_DROPS} "
        f"drops with {args.fraction:.0%} of one drop's train labels wrong; seeds "
        f"{', '.join(map(str, args.seeds))} pooled ({settings})"
    )
    print(format_table(rows, FIELDS))
    print("\n" + target_line(rows))
    if args.overrides:
        print(f"\nNot written (settings overridden: {', '.join(args.overrides)})")
    else:
        print(f"\nWrote {write_results(BENCHMARK, rows, FIELDS, RESULT_KEY)}")
        print(f"Wrote {write_results(CAP_BENCHMARK, cap_rows, CAP_FIELDS, CAP_KEY)}")
    if args.copies:
        duplicate_rows = run_near_duplicates(
            images, embeddings, embedder, args.copies, threshold, settings.seed
        )
        print(
            f"\nCosine similarities on {dataset_label(dataset)} ({len(images)} images; "
            f"{args.copies} seeded copies of each kind; share_at_threshold: >= {threshold})"
        )
        print(format_table(duplicate_rows, DUPLICATE_FIELDS))
        path = write_results(DUPLICATES_BENCHMARK, duplicate_rows, DUPLICATE_FIELDS, DUPLICATE_KEY)
        print(f"\nWrote {path}")
    print(f"Wall time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
