import numpy as np
import pytest

from prodcls_pipeline.evaluation.calibration import (
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    reliability_figure,
    reliability_table,
)
from prodcls_pipeline.evaluation.metrics import figure_png


def test_perfectly_calibrated_predictions_have_no_calibration_error() -> None:
    # In each bin the share of right answers equals the confidence: 8 of 10 at 0.8, 3 of 10 at 0.3.
    confidences = np.array([0.8] * 10 + [0.3] * 10)
    correct = np.array([True] * 8 + [False] * 2 + [True] * 3 + [False] * 7)
    table = reliability_table(confidences, correct, bins=10)
    assert expected_calibration_error(table) == pytest.approx(0.0, abs=1e-12)


def test_overconfidence_is_the_weighted_gap() -> None:
    # 0.9 confident but right half the time (gap 0.4, 10 images); 0.65 confident and always
    # right (gap 0.35, 30 images): ECE = (10 * 0.4 + 30 * 0.35) / 40.
    confidences = np.array([0.9] * 10 + [0.65] * 30)
    correct = np.array([True, False] * 5 + [True] * 30)
    table = reliability_table(confidences, correct, bins=10)
    assert expected_calibration_error(table) == pytest.approx((4 + 10.5) / 40)
    assert calibration_metrics(table) == {"ece": round((4 + 10.5) / 40, 4)}


def test_bins_are_equal_width_and_hold_their_edges() -> None:
    table = reliability_table(np.array([0.0, 0.5, 0.51, 1.0]), np.ones(4, dtype=bool), bins=2)
    assert table["lower"].tolist() == [0.0, 0.5]
    assert table["upper"].tolist() == [0.5, 1.0]
    assert table["images"].tolist() == [2, 2]
    assert table["confidence"].tolist() == pytest.approx([0.25, 0.755])


def test_empty_bins_weigh_nothing() -> None:
    table = reliability_table(np.array([0.95, 0.95]), np.array([True, True]), bins=15)
    assert table["images"].sum() == 2
    assert np.isnan(table["accuracy"].iloc[0])
    assert expected_calibration_error(table) == pytest.approx(0.05)


def test_reliability_diagram_renders() -> None:
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.2, 1.0, 50)
    table = reliability_table(confidences, rng.uniform(size=50) < confidences, bins=15)
    assert figure_png(reliability_figure(table)).startswith(b"\x89PNG")


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_at(
    true_temperature,
) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 5))
    probabilities = np.exp(logits / true_temperature)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    targets = (probabilities.cumsum(axis=1) > rng.random((len(logits), 1))).argmax(axis=1)
    assert fit_temperature(logits, targets) == pytest.approx(true_temperature, rel=0.05)


def test_fit_temperature_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="Temperature scaling needs"):
        fit_temperature(np.zeros((3, 2)), np.zeros(4, dtype=int))
