"""Is one model's top-1 really different from another's on the same test images?

Paired, because both models answered the same images: the exact McNemar test looks only at the
images exactly one of them got right, and a paired bootstrap gives an interval for the top-1
difference.
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest

# Resamples drawn at a time: bounded memory whatever the test split's size.
_RESAMPLE_CHUNK = 500
# Under the null hypothesis either model is equally likely to be the one right on an image
# where they disagree.
_EVEN_ODDS = 0.5


@dataclass(frozen=True)
class PairedComparison:
    """Model A against model B on `images` shared test images."""

    images: int
    both_right: int
    only_a_right: int
    only_b_right: int
    both_wrong: int
    # None when no test image is shared: there is nothing to compare.
    top1_a: float | None
    top1_b: float | None
    difference: float | None  # top1_b - top1_a
    mcnemar_p: float
    interval_low: float | None
    interval_high: float | None
    confidence_level: float
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_exact_p(only_a_right: int, only_b_right: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs; 1 when there are none."""
    discordant = only_a_right + only_b_right
    if discordant == 0:
        return 1.0
    return float(binomtest(min(only_a_right, only_b_right), discordant, _EVEN_ODDS).pvalue)


def compare_paired(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    resamples: int,
    confidence_level: float,
    seed: int,
) -> PairedComparison:
    """McNemar and a percentile bootstrap interval of top-1 B − top-1 A, resampling images."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"Need one answer per shared image from each model: {a.shape}, {b.shape}")
    images = len(a)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    low = high = top1_a = top1_b = None
    if images:
        differences = _bootstrap_differences(a, b, resamples, seed)
        tail = (1 - confidence_level) / 2
        low, high = (float(value) for value in np.quantile(differences, [tail, 1 - tail]))
        top1_a, top1_b = float(a.mean()), float(b.mean())
    return PairedComparison(
        images=images,
        both_right=int(np.sum(a & b)),
        only_a_right=only_a,
        only_b_right=only_b,
        both_wrong=int(np.sum(~a & ~b)),
        top1_a=top1_a,
        top1_b=top1_b,
        difference=None if top1_a is None or top1_b is None else top1_b - top1_a,
        mcnemar_p=mcnemar_exact_p(only_a, only_b),
        interval_low=low,
        interval_high=high,
        confidence_level=confidence_level,
        resamples=resamples,
    )


def _bootstrap_differences(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """top-1 B − top-1 A on `resamples` resamples (with replacement) of the paired images."""
    generator = np.random.default_rng(seed)
    gain = b.astype(np.int8) - a.astype(np.int8)
    chunks = []
    for start in range(0, resamples, _RESAMPLE_CHUNK):
        size = min(_RESAMPLE_CHUNK, resamples - start)
        picks = generator.integers(0, len(gain), size=(size, len(gain)))
        chunks.append(gain[picks].mean(axis=1))
    return np.concatenate(chunks)
