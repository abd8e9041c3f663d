"""Stable train/val/test assignment: an image's split depends only on its own hash.

An image pinned to a split by its drop's labels.csv keeps that split. Any other image gets a
uniform number u in [0, 1) from sha256(f"{seed}:{label}:{sha256}") and lands in test when
u < test_fraction, in val when u < test_fraction + val_fraction, else in train. No other row
takes part, so adding, removing or reordering images never moves an existing image between
splits, and a later model's test set stays comparable with an earlier one's.

The split is stratified in expectation only: within every class each image falls in test with
probability test_fraction, independently. A class of n images therefore gets about
n * test_fraction test images, but a small class can by chance get none (0.8**10 ≈ 11 % for ten
images at test_fraction = 0.2); `missing_splits` finds such classes and the summary shows
per-class counts.
"""

import hashlib
import logging

import numpy as np
import pandas as pd

from prodcls_pipeline.core.schema import (
    PINNED_SPLITS,
    REQUIRED_SPLITS,
    SPLIT_COLUMNS,
    SPLITS,
    TEST,
    TRAIN,
    UNPINNED,
    VAL,
)

TOTAL_ROW = "(total)"

# The first 8 bytes of the digest, read as an unsigned integer, are uniform on [0, 2**64).
_UNIFORM_BYTES = 8
_UNIFORM_RANGE = 2**64

logger = logging.getLogger(__name__)


def split_uniform(sha256: str, label: str, seed: int) -> float:
    """A number in [0, 1) that depends only on the image's hash, its label and the seed."""
    digest = hashlib.sha256(f"{seed}:{label}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:_UNIFORM_BYTES], "big") / _UNIFORM_RANGE


def hashed_split(
    sha256: str, label: str, seed: int, val_fraction: float, test_fraction: float
) -> str:
    """The split of an unpinned image."""
    u = split_uniform(sha256, label, seed)
    if u < test_fraction:
        return TEST
    if u < test_fraction + val_fraction:
        return VAL
    return TRAIN


def assign_splits(
    manifest: pd.DataFrame, seed: int, val_fraction: float, test_fraction: float
) -> pd.DataFrame:
    """One row per image: sha256, label, coarse_label, split; sorted by sha256."""
    _check_fractions(val_fraction, test_fraction)
    if manifest["sha256"].duplicated().any():
        raise ValueError("The manifest holds duplicate sha256 values; one row per image expected")
    pinned = manifest["pinned_split"].fillna(UNPINNED).astype(str)
    unknown = sorted(set(pinned) - set(PINNED_SPLITS))
    if unknown:
        raise ValueError(f"Unknown pinned_split values {unknown}; expected one of {SPLITS}")
    hashed = [
        hashed_split(sha256, label, seed, val_fraction, test_fraction)
        for sha256, label in zip(manifest["sha256"], manifest["label"], strict=True)
    ]
    splits = manifest[["sha256", "label", "coarse_label"]].assign(
        coarse_label=manifest["coarse_label"].fillna(""),
        split=pinned.where(pinned != UNPINNED, pd.Series(hashed, index=manifest.index, dtype=str)),
    )
    return splits[list(SPLIT_COLUMNS)].sort_values("sha256", ignore_index=True)


def split_summary(splits: pd.DataFrame) -> pd.DataFrame:
    """Per-label image counts in train, val, test and in total, then a total row."""
    counts = (
        pd.crosstab(splits["label"], splits["split"])
        .reindex(columns=list(SPLITS), fill_value=0)
        .astype(int)
    )
    counts["total"] = counts.sum(axis="columns")
    counts.loc[TOTAL_ROW] = counts.sum(axis="index")
    counts.columns.name = None
    return counts.rename_axis("label").reset_index()


def missing_splits(splits: pd.DataFrame) -> dict[str, list[str]]:
    """Labels without any image in a required split, per split (an empty list when none)."""
    present = splits.groupby("split")["label"].agg(set)
    labels = set(splits["label"])
    return {split: sorted(labels - present.get(split, set())) for split in REQUIRED_SPLITS}


def warn_on_missing_splits(splits: pd.DataFrame) -> None:
    """Log a warning for each required split that some classes lack."""
    for split, labels in missing_splits(splits).items():
        if labels:
            logger.warning(
                "%d class(es) have no %s images: %s", len(labels), split, ", ".join(labels)
            )


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ValueError(f"split.{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"split.val_fraction + split.test_fraction must be below 1 so that training keeps "
            f"images, got {val_fraction} + {test_fraction}"
        )


def sample_split(splits: pd.DataFrame, split: str, count: int, seed: int) -> list[str]:
    """`count` sha256s of one split, the same for the same rows and seed whatever their order."""
    candidates = np.sort(splits.loc[splits["split"] == split, "sha256"].to_numpy(dtype=str))
    chosen = np.random.default_rng(seed).permutation(len(candidates))[:count]
    return candidates[chosen].tolist()
