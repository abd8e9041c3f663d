"""Evaluate: score the classifier on the test split only, make the report and plots, log them."""

import io
from typing import Any

import mlflow
import pandas as pd
from PIL import Image

from prodcls_pipeline.classifier import head_probabilities
from prodcls_pipeline.embeddings import CLEAN_VIEW, EmbeddingStore
from prodcls_pipeline.metrics import (
    classification_metrics,
    confusion_figure,
    figure_png,
    prediction_table,
)


def predict_test_split(
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    embedding_store: EmbeddingStore,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Predictions for every test image; the backbone is frozen, so cached embeddings are exact."""
    test = splits[splits["split"] == "test"].sort_values("sha256")
    if test.empty:
        raise ValueError("The test split is empty: nothing to evaluate")
    features = embedding_store.load(classifier["backbone"], CLEAN_VIEW, test["sha256"].tolist())
    return prediction_table(
        test["sha256"].tolist(),
        test["label"].tolist(),
        head_probabilities(classifier, features),
        classifier["labels"],
        classifier["coarse_labels"],
        params["top_k"],
    )


def compute_metrics(
    test_predictions: pd.DataFrame, classifier: dict[str, Any], params: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame]:
    return classification_metrics(test_predictions, classifier["labels"], params["top_k"])


def plot_confusion_matrix(test_predictions: pd.DataFrame, classifier: dict[str, Any]) -> bytes:
    figure = confusion_figure(
        test_predictions["label"],
        test_predictions["predicted"],
        classifier["labels"],
        title=f"Test split confusion matrix ({len(test_predictions)} images)",
    )
    return figure_png(figure)


def log_evaluation(
    metrics: dict[str, Any],
    classification_report: pd.DataFrame,
    confusion_matrix: bytes,
    mlflow_run: dict[str, str],
) -> None:
    """Add the test metrics and the confusion matrix to the training run."""
    mlflow.set_tracking_uri(mlflow_run["tracking_uri"])
    with mlflow.start_run(run_id=mlflow_run["run_id"]):
        mlflow.log_metrics(
            {f"test_{name}": value for name, value in metrics.items() if isinstance(value, float)}
        )
        mlflow.log_dict(metrics, "evaluation/metrics.json")
        mlflow.log_text(classification_report.to_csv(index=False), "evaluation/per_class.csv")
        mlflow.log_image(
            Image.open(io.BytesIO(confusion_matrix)), "evaluation/confusion_matrix.png"
        )
