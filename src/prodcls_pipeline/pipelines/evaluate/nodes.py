"""Evaluate: score the classifier on the test split only, make the report and plots, log them."""

import io
from typing import Any

import mlflow
import pandas as pd
from PIL import Image

from prodcls_pipeline.core.schema import TEST
from prodcls_pipeline.core.tracking import set_tracking
from prodcls_pipeline.data.splitting import sample_split
from prodcls_pipeline.evaluation.calibration import (
    calibration_metrics,
    reliability_figure,
    reliability_table,
)
from prodcls_pipeline.evaluation.gallery import mistake_gallery, worst_mistakes
from prodcls_pipeline.evaluation.metrics import (
    classification_metrics,
    coarse_confusion_figure,
    confusion_figure,
    figure_png,
    per_class_metrics,
    prediction_table,
)
from prodcls_pipeline.evaluation.prediction import predict_probabilities
from prodcls_pipeline.evaluation.robustness import (
    BATCH_SIZE,
    AttackBudget,
    corruptions,
    robustness_scores,
)
from prodcls_pipeline.framework.params import EvaluateParams
from prodcls_pipeline.models.classifier import build_classifier, checkpoint_preprocessing
from prodcls_pipeline.runtime.batching import ImageSource, class_indices, labelled_batches


def predict_test_split(
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    params: EvaluateParams,
) -> pd.DataFrame:
    """Full-model predictions, with every class probability, for each test image."""
    test = splits[splits["split"] == TEST].sort_values("sha256")
    if test.empty:
        raise ValueError("The test split is empty: nothing to evaluate")
    probabilities = predict_probabilities(
        build_classifier(classifier),
        image_store,
        test["sha256"].tolist(),
        checkpoint_preprocessing(classifier),
        description="predict test split",
    )
    return prediction_table(
        test["sha256"].tolist(),
        test["label"].tolist(),
        probabilities,
        classifier["labels"],
        classifier["coarse_labels"],
        params.top_k,
    )


def compute_metrics(
    test_predictions: pd.DataFrame, classifier: dict[str, Any], params: EvaluateParams
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, dict[str, Any]]]:
    """Overall metrics, the per-class report, and the same report keyed by label."""
    metrics, report = classification_metrics(test_predictions, classifier["labels"], params.top_k)
    return metrics, report, per_class_metrics(report)


def measure_calibration(test_predictions: pd.DataFrame, params: EvaluateParams) -> pd.DataFrame:
    return reliability_table(
        test_predictions["confidence"].to_numpy(),
        (test_predictions["true_rank"] == 0).to_numpy(),
        params.calibration_bins,
    )


def measure_robustness(
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    params: EvaluateParams,
    seed: int,
) -> dict[str, Any]:
    """Clean, FGSM, PGD and corruption top-1 on one seeded sample of test images."""
    labels = classifier["labels"]
    known = splits[splits["label"].isin(labels)]
    sample = sample_split(known, "test", params.robustness_images, seed)
    preprocessing = checkpoint_preprocessing(classifier)
    return robustness_scores(
        build_classifier(classifier),
        labelled_batches(
            image_store,
            sample,
            class_indices(known, sample, labels),
            preprocessing,
            BATCH_SIZE,
            description="attacks and corruptions",
        ),
        preprocessing,
        AttackBudget(params.attack_epsilon, params.pgd_steps, params.pgd_alpha),
        corruptions(params.corruptions.model_dump(), seed),
    )


def assemble_metrics(
    classification_metrics: dict[str, Any],
    reliability: pd.DataFrame,
    robustness_metrics: dict[str, Any],
) -> dict[str, Any]:
    """One flat dict of scalars for `dvc metrics show`."""
    return {**classification_metrics, **calibration_metrics(reliability), **robustness_metrics}


def plot_confusion_matrix(test_predictions: pd.DataFrame, classifier: dict[str, Any]) -> bytes:
    figure = confusion_figure(
        test_predictions["label"],
        test_predictions["predicted"],
        classifier["labels"],
        title=f"Test split confusion matrix ({len(test_predictions)} images)",
    )
    return figure_png(figure)


def plot_coarse_confusion_matrix(
    test_predictions: pd.DataFrame, classifier: dict[str, Any]
) -> bytes:
    return figure_png(coarse_confusion_figure(test_predictions, classifier["coarse_labels"]))


def plot_reliability_diagram(reliability: pd.DataFrame) -> bytes:
    return figure_png(reliability_figure(reliability))


def plot_worst_mistakes(
    test_predictions: pd.DataFrame, image_store: ImageSource, params: EvaluateParams
) -> bytes:
    mistakes = worst_mistakes(test_predictions, params.worst_mistakes)
    title = f"The {len(mistakes)} most confident mistakes on the test split"
    return figure_png(mistake_gallery(mistakes, image_store, title))


def log_evaluation(
    metrics: dict[str, Any],
    classification_report: pd.DataFrame,
    reliability: pd.DataFrame,
    confusion_matrix: bytes,
    coarse_confusion_matrix: bytes,
    reliability_diagram: bytes,
    worst_mistakes: bytes,
    mlflow_run: dict[str, str],
) -> None:
    """Add the test metrics, tables and every plot to the training run."""
    plots = {
        "confusion_matrix": confusion_matrix,
        "coarse_confusion_matrix": coarse_confusion_matrix,
        "reliability_diagram": reliability_diagram,
        "worst_mistakes": worst_mistakes,
    }
    set_tracking(mlflow_run["tracking_uri"])
    with mlflow.start_run(run_id=mlflow_run["run_id"]):
        mlflow.log_metrics(
            {f"test_{name}": value for name, value in metrics.items() if isinstance(value, float)}
        )
        mlflow.log_dict(metrics, "evaluation/metrics.json")
        mlflow.log_text(classification_report.to_csv(index=False), "evaluation/per_class.csv")
        mlflow.log_text(reliability.to_csv(index=False), "evaluation/reliability.csv")
        for name, png in plots.items():
            mlflow.log_image(Image.open(io.BytesIO(png)), f"evaluation/{name}.png")
