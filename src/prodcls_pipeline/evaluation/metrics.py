"""Test-split metrics and plots. Inputs are predictions, never the training data."""

import io
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix

from prodcls_pipeline.core import scores
from prodcls_pipeline.core.numbers import round_metric
from prodcls_pipeline.core.plotting import configure_matplotlib

configure_matplotlib()


def prediction_table(
    sha256s: list[str],
    true_labels: list[str],
    probabilities: np.ndarray,
    labels: list[str],
    coarse_labels: list[str],
    top_k: int,
) -> pd.DataFrame:
    """One row per image: truth, prediction, confidence, the rank of the truth, the top k, and
    every class probability (in `labels` order, for later calibration or comparison)."""
    order = np.argsort(-probabilities, axis=1, kind="stable")
    index_of = {label: index for index, label in enumerate(labels)}
    true_index = np.array([index_of.get(label, -1) for label in true_labels])
    true_rank = np.array(
        [
            int(np.flatnonzero(row == truth)[0]) if truth >= 0 else len(labels)
            for row, truth in zip(order, true_index, strict=True)
        ]
    )
    coarse_of = dict(zip(labels, coarse_labels, strict=True))
    predicted = [labels[row[0]] for row in order]
    return pd.DataFrame(
        {
            "sha256": sha256s,
            "label": true_labels,
            "coarse_label": [coarse_of.get(label, "") for label in true_labels],
            "predicted": predicted,
            "predicted_coarse": [coarse_of[label] for label in predicted],
            "confidence": probabilities[np.arange(len(order)), order[:, 0]].astype(float),
            "true_rank": true_rank,
            "top_k": [[labels[i] for i in row[:top_k]] for row in order],
            "probabilities": probabilities.tolist(),
        }
    )


def classification_metrics(
    predictions: pd.DataFrame, labels: list[str], top_k: int
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Overall metrics (JSON, for `dvc metrics`) and the per-class report (table)."""
    truth, predicted = predictions["label"], predictions["predicted"]
    report = classification_report(
        truth, predicted, labels=labels, output_dict=True, zero_division=0
    )
    per_class = {
        label: {
            "precision": round_metric(report[label]["precision"]),
            "recall": round_metric(report[label]["recall"]),
            "f1": round_metric(report[label]["f1-score"]),
            "support": int(report[label]["support"]),
        }
        for label in labels
    }
    has_coarse = bool((predictions["coarse_label"] != "").all())
    metrics = {
        "test_images": len(predictions),
        "classes": len(labels),
        "top1": round_metric(scores.top1(truth, predicted)),
        f"top{top_k}": round_metric(scores.hit_rate(predictions["true_rank"] < top_k)),
        "macro_f1": round_metric(scores.macro_f1(truth, predicted, labels)),
        "balanced_accuracy": round_metric(balanced_accuracy_score(truth, predicted)),
        "coarse_top1": round_metric(
            scores.top1(predictions["coarse_label"], predictions["predicted_coarse"])
        )
        if has_coarse
        else None,
    }
    table = pd.DataFrame([{"label": label, **values} for label, values in per_class.items()])
    return metrics, table


def per_class_metrics(report: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The per-class report as {label: {precision, recall, f1, support}}: one row per class in
    `dvc metrics diff`, and the per-class part of a version's lineage record."""
    return report.set_index("label").to_dict("index")


def confusion_figure(
    truth: pd.Series, predicted: pd.Series, labels: list[str], title: str
) -> Figure:
    """Row-normalised confusion matrix with counts, readable up to about a hundred classes."""
    counts = confusion_matrix(truth, predicted, labels=labels)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = max(6.0, 0.28 * len(labels) + 3)
    figure, axes = plt.subplots(figsize=(side, side))
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    if len(labels) <= 30:
        for (row, column), count in np.ndenumerate(counts):
            if count:
                colour = "white" if share[row, column] > 0.5 else "black"
                axes.text(
                    column, row, str(count), ha="center", va="center", fontsize=7, color=colour
                )
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of true class")
    figure.tight_layout()
    return figure


def coarse_confusion_figure(predictions: pd.DataFrame, coarse_labels: list[str]) -> Figure:
    """The confusion matrix of coarse labels (fine predictions mapped to their coarse label).

    Without coarse labels there is nothing to confuse: the figure says so, so the stage's
    output exists either way.
    """
    classes = sorted({label for label in coarse_labels if label})
    title = f"Test split coarse confusion matrix ({len(predictions)} images)"
    if not classes:
        return message_figure("This dataset has no coarse labels", title)
    return confusion_figure(
        predictions["coarse_label"], predictions["predicted_coarse"], classes, title
    )


def message_figure(message: str, title: str) -> Figure:
    """A plot that says why there is nothing to plot, where a stage must still write a PNG."""
    figure, axes = plt.subplots(figsize=(4, 1.5))
    axes.text(0.5, 0.5, message, ha="center", va="center")
    axes.axis("off")
    axes.set_title(title)
    return figure


def figure_png(figure: Figure, dpi: int = 110) -> bytes:
    """Render and close a figure: PNG bytes can be both saved and logged as an artifact."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
