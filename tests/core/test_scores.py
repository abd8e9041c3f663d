"""Top-1 and macro-F1 in one place: exact values, and the reported (rounded) ones."""

import numpy as np
import pandas as pd
import pytest

from prodcls_pipeline.core import scores
from prodcls_pipeline.evaluation.metrics import classification_metrics
from prodcls_pipeline.release.promotion import score

TRUTH = ["apple", "apple", "pear", "plum"]
PREDICTED = ["apple", "pear", "pear", "apple"]
LABELS = ["apple", "pear", "plum"]
# Per-class F1 by hand: apple 1/2 (1 hit, 1 miss, 1 false alarm), pear 2/3, plum 0.
MACRO_F1 = (1 / 2 + 2 / 3 + 0) / 3


def test_top1_is_the_exact_share_of_hits_for_labels_and_indices() -> None:
    assert scores.top1(TRUTH, PREDICTED) == 0.5
    assert scores.top1(np.array([0, 1, 2]), np.array([0, 1, 1])) == 2 / 3
    assert scores.top1(pd.Series(TRUTH[:3]), pd.Series(PREDICTED[:3])) == 2 / 3


def test_hit_rate_is_the_share_of_true_values() -> None:
    assert scores.hit_rate(np.array([True, False, False])) == 1 / 3
    assert isinstance(scores.hit_rate([True]), float)


def test_macro_f1_averages_every_listed_class_a_never_predicted_one_scoring_zero() -> None:
    assert scores.macro_f1(TRUTH, PREDICTED, LABELS) == pytest.approx(MACRO_F1, abs=1e-15)
    with_absent_class = scores.macro_f1(TRUTH, PREDICTED, [*LABELS, "kiwi"])
    assert with_absent_class == pytest.approx(MACRO_F1 * 3 / 4, abs=1e-15)


def test_classification_scores_are_rounded_as_reported() -> None:
    assert scores.classification_scores(TRUTH, PREDICTED, LABELS) == {
        "top1": 0.5,
        "macro_f1": round(MACRO_F1, 4),
    }


def test_evaluate_and_the_promotion_gate_report_the_same_scores() -> None:
    """Both stages score through core.scores: same truth and predictions, same numbers."""
    predictions = pd.DataFrame(
        {
            "label": TRUTH,
            "predicted": PREDICTED,
            "coarse_label": "",
            "predicted_coarse": "",
            "true_rank": [0 if t == p else 1 for t, p in zip(TRUTH, PREDICTED, strict=True)],
        }
    )
    metrics, _ = classification_metrics(predictions, LABELS, top_k=2)
    gate = score(TRUTH, PREDICTED)

    expected = scores.classification_scores(TRUTH, PREDICTED, LABELS)
    assert {key: metrics[key] for key in expected} == expected
    assert {key: gate[key] for key in expected} == expected
