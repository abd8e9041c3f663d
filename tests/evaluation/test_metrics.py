import numpy as np
import pandas as pd
import pytest

from prodcls_pipeline.evaluation.metrics import (
    classification_metrics,
    coarse_confusion_figure,
    confusion_figure,
    figure_png,
    prediction_table,
)

LABELS = ["apple", "pear", "milk"]
COARSE = ["fruit", "fruit", "dairy"]


def table() -> pd.DataFrame:
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],  # apple → apple
            [0.6, 0.3, 0.1],  # pear → apple (coarse right, truth ranked 2nd)
            [0.1, 0.1, 0.8],  # milk → milk
            [0.5, 0.1, 0.4],  # milk → apple (truth ranked 2nd)
        ]
    )
    return prediction_table(
        ["a", "b", "c", "d"], ["apple", "pear", "milk", "milk"], probabilities, LABELS, COARSE, 2
    )


def test_prediction_table_ranks_and_coarse_labels() -> None:
    predictions = table()
    assert predictions["predicted"].tolist() == ["apple", "apple", "milk", "apple"]
    assert predictions["true_rank"].tolist() == [0, 1, 0, 1]
    assert predictions["predicted_coarse"].tolist() == ["fruit", "fruit", "dairy", "fruit"]
    assert predictions["top_k"][3] == ["apple", "milk"]


def test_metrics_from_a_known_table() -> None:
    metrics, per_class = classification_metrics(table(), LABELS, top_k=2)
    assert metrics["top1"] == 0.5
    assert metrics["top2"] == 1.0
    assert metrics["coarse_top1"] == 0.75
    per_label = per_class.set_index("label")
    assert per_label.loc["pear", "recall"] == 0.0
    assert per_label.loc["milk", "support"] == 2
    assert "per_class" not in metrics
    assert metrics["macro_f1"] == pytest.approx(np.mean([1 / 2, 0.0, 2 / 3]), abs=1e-4)
    assert per_class["label"].tolist() == LABELS


def test_coarse_accuracy_is_absent_without_coarse_labels() -> None:
    predictions = table().assign(coarse_label="")
    metrics, _ = classification_metrics(predictions, LABELS, top_k=2)
    assert metrics["coarse_top1"] is None


def test_confusion_matrix_renders_png() -> None:
    predictions = table()
    figure = confusion_figure(predictions["label"], predictions["predicted"], LABELS, "test")
    assert figure_png(figure).startswith(b"\x89PNG")


def test_prediction_table_keeps_every_class_probability() -> None:
    assert table()["probabilities"][3] == pytest.approx([0.5, 0.1, 0.4])


def test_coarse_confusion_matrix_uses_the_coarse_classes() -> None:
    figure = coarse_confusion_figure(table(), COARSE)
    axes = figure.axes[0]
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["dairy", "fruit"]
    # Rows are the true coarse class: dairy 1 right and 1 taken for fruit; fruit 2 of 2 right.
    assert axes.images[0].get_array().tolist() == [[0.5, 0.5], [0.0, 1.0]]
    assert figure_png(figure).startswith(b"\x89PNG")


def test_coarse_confusion_matrix_without_coarse_labels_says_so() -> None:
    figure = coarse_confusion_figure(table().assign(coarse_label=""), ["", "", ""])
    assert "no coarse labels" in figure.axes[0].texts[0].get_text()
    assert figure_png(figure).startswith(b"\x89PNG")


def test_labels_with_mathtext_syntax_are_drawn_as_typed() -> None:
    """`$x^` is invalid mathtext: parsed, it raises while the plot is saved."""
    labels = ["$x^", "a_b$", r"\frac{"]
    truth = pd.Series(["$x^", "a_b$", r"\frac{"])
    figure = confusion_figure(truth, truth, labels, "test of $x^")

    assert figure_png(figure).startswith(b"\x89PNG")
    drawn = [tick.get_text() for tick in figure.axes[0].get_xticklabels()]
    assert drawn == labels
