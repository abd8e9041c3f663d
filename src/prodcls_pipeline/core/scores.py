"""Top-1 and macro-F1, computed one way for every stage that scores a model.

`top1` and `macro_f1` return the exact value (a guard comparing two models needs it);
`classification_scores` returns both rounded as every report shows them.
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import f1_score

from prodcls_pipeline.core.numbers import round_metric


def hit_rate(hits: ArrayLike) -> float:
    """The share of true values in `hits` (booleans, one per image)."""
    return float(np.mean(np.asarray(hits)))


def top1(truth: ArrayLike, predicted: ArrayLike) -> float:
    """The share of images whose predicted class is their true class (labels or indices)."""
    return hit_rate(np.asarray(truth) == np.asarray(predicted))


def macro_f1(truth: ArrayLike, predicted: ArrayLike, labels: Sequence[str]) -> float:
    """The unweighted mean of per-class F1 over `labels`; a class never predicted scores 0."""
    return float(f1_score(truth, predicted, labels=list(labels), average="macro", zero_division=0))


def classification_scores(
    truth: ArrayLike, predicted: ArrayLike, labels: Sequence[str]
) -> dict[str, float]:
    """`{"top1", "macro_f1"}` over `labels`, rounded as reported."""
    return {
        "top1": round_metric(top1(truth, predicted)),
        "macro_f1": round_metric(macro_f1(truth, predicted, labels)),
    }
