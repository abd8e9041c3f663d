"""The evaluate stage end to end on a fake image store and the real Lite0 backbone."""

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from helpers import FakeImageStore, lite0_checkpoint, synthetic_images
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from mlflow import MlflowClient

from prodcls_pipeline.core.tracking import (
    TRACKING_URI_ENV,
    sqlite_tracking_uri,
    use_project_tracking,
)
from prodcls_pipeline.framework.params import EvaluateParams
from prodcls_pipeline.pipelines.evaluate import create_pipeline

CLASSES = 3
COARSE = ["fruit", "fruit", "dairy"]
SPLITS = ["train"] * 2 + ["test"] * 6
PARAMS = {
    "top_k": 2,
    "calibration_bins": 5,
    "worst_mistakes": 3,
    "robustness_images": 4,
    "attack_epsilon": 2 / 255,
    "pgd_steps": 2,
    "pgd_alpha": 1 / 255,
    "corruptions": {"blur_radius": 2.0, "noise_std": 0.08, "brightness": 0.6, "jpeg_quality": 20},
}
PLOTS = ["confusion_matrix", "coarse_confusion_matrix", "reliability_diagram", "worst_mistakes"]


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so the test can read the outputs afterwards."""

    def _release(self) -> None:
        pass


@pytest.fixture
def training_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A run as the train stage leaves it, in a sqlite store under tmp_path."""
    uri = sqlite_tracking_uri(tmp_path)
    monkeypatch.setenv(TRACKING_URI_ENV, uri)
    use_project_tracking("prodcls-test", project_root=tmp_path)
    with mlflow.start_run() as run:
        mlflow.log_param("backbone", "efficientnet_lite0")
    return {"run_id": run.info.run_id, "tracking_uri": uri}


def catalog(training_run: dict[str, str]) -> DataCatalog:
    store = FakeImageStore(synthetic_images(len(SPLITS), seed=5))
    labels = [f"class_{index}" for index in range(CLASSES)]
    splits = pd.DataFrame(
        {
            "sha256": list(store.images),
            "label": [labels[index % CLASSES] for index in range(len(SPLITS))],
            "coarse_label": [COARSE[index % CLASSES] for index in range(len(SPLITS))],
            "split": SPLITS,
        }
    )
    outputs = ["test_predictions", "metrics", "classification_report", "reliability", *PLOTS]
    return DataCatalog(
        datasets={
            "classifier": MemoryDataset(lite0_checkpoint(CLASSES) | {"coarse_labels": COARSE}),
            "splits": MemoryDataset(splits),
            "image_store": MemoryDataset(store, copy_mode="assign"),
            "mlflow_run": MemoryDataset(training_run),
            "params:evaluate": MemoryDataset(EvaluateParams.model_validate(PARAMS)),
            "params:seed": MemoryDataset(42),
            **{name: KeptDataset() for name in outputs},
        }
    )


def test_evaluate_pipeline_scores_plots_and_logs(training_run: dict[str, str]) -> None:
    data = catalog(training_run)
    SequentialRunner().run(create_pipeline(), data)

    predictions = data.load("test_predictions")
    assert len(predictions) == SPLITS.count("test")
    assert all(len(row) == CLASSES for row in predictions["probabilities"])
    assert predictions["probabilities"].map(sum).tolist() == pytest.approx([1.0] * 6)

    metrics = data.load("metrics")
    assert metrics["test_images"] == 6 and metrics["classes"] == CLASSES
    for name in ["top1", "top2", "macro_f1", "balanced_accuracy", "coarse_top1", "ece"]:
        assert 0 <= metrics[name] <= 1, name
    assert metrics["robustness_images"] == PARAMS["robustness_images"]
    for name in ["clean_top1_robustness_sample", "fgsm_top1", "pgd_top1", "corruption_top1_mean"]:
        assert 0 <= metrics[name] <= 1, name
    assert all(isinstance(value, int | float) for value in metrics.values())

    assert data.load("reliability")["images"].sum() == 6
    for name in PLOTS:
        assert data.load(name).startswith(b"\x89PNG"), name

    logged = MlflowClient(training_run["tracking_uri"]).get_run(training_run["run_id"])
    assert logged.data.metrics["test_ece"] == metrics["ece"]
    assert logged.data.metrics["test_pgd_top1"] == metrics["pgd_top1"]
    artifacts = {
        artifact.path
        for artifact in MlflowClient(training_run["tracking_uri"]).list_artifacts(
            training_run["run_id"], "evaluation"
        )
    }
    expected = {f"evaluation/{name}.png" for name in PLOTS}
    assert expected | {"evaluation/per_class.csv", "evaluation/metrics.json"} <= artifacts
