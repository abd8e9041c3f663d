"""Package stage: the deployable model package, its registered MLflow model version (alias
`challenger`), and the gate that decides whether it becomes `champion`."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from prodcls_pipeline.core.schema import TEST
from prodcls_pipeline.core.tracking import tracking_uri
from prodcls_pipeline.data.images import ImageStore, IngestSettings
from prodcls_pipeline.framework.params import IngestParams, PackageParams
from prodcls_pipeline.release.lineage import collect_lineage
from prodcls_pipeline.release.package import LINEAGE_FILE, build_package, version_tags
from prodcls_pipeline.release.promotion import (
    PROMOTED,
    PromotionRule,
    decide,
    render_decision,
    score,
)
from prodcls_pipeline.release.registry import (
    CHAMPION,
    alias_version,
    attach_decision,
    register_model_version,
    set_alias,
)
from prodcls_serving.model import IMAGE_COLUMN, load_model

DECISION_FILE = "promotion.json"
DECISION_MARKDOWN_FILE = "promotion.md"


def build_model_package(
    onnx_models: dict[str, bytes | Callable[[], bytes]],
    compression_report: dict[str, Any],
    classifier: dict[str, Any],
    metrics: dict[str, Any],
    classification_report: pd.DataFrame,
    validated_manifest: pd.DataFrame,
    validated_manifest_file: bytes,
    validation_report: dict[str, Any],
    raw_drops: Path,
    params: PackageParams,
    ingest: IngestParams,
) -> dict[str, bytes]:
    """The package; served images are held to the limits the training images were ingested
    under."""
    # Kedro and DVC both run from the project root, so that is where git, params and locks live.
    lineage = collect_lineage(Path.cwd(), raw_drops, validated_manifest_file)
    return build_package(
        onnx_models=_materialise(onnx_models),
        model_name=params.registered_model_name,
        classifier=classifier,
        metrics=metrics,
        per_class=classification_report,
        compression_report=compression_report,
        manifest=validated_manifest,
        validation_report=validation_report,
        lineage=lineage,
        image_limits=IngestSettings.from_params(ingest.model_dump()).limits,
    )


def register_model(
    model_package: dict[str, bytes | Callable[[], bytes]],
    mlflow_run: dict[str, str],
    splits: pd.DataFrame,
    image_store: ImageStore,
    params: PackageParams,
) -> dict[str, Any]:
    """A new model version with alias `challenger`; test images make its input example."""
    package = _materialise(model_package)
    examples = _test_images(splits)[: params.input_example_images]
    return register_model_version(
        package,
        mlflow_run,
        model_name=params.registered_model_name,
        tags=version_tags(json.loads(package[LINEAGE_FILE])),
        input_example_images=[image_store.path(sha256).read_bytes() for sha256 in examples],
        tracking_uri=tracking_uri(Path.cwd()),
    )


def gate_promotion(
    registration: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageStore,
    params: PackageParams,
) -> tuple[dict[str, Any], str]:
    """Score the challenger and the current champion on today's test split, apply the rule,
    move the `champion` alias only on promotion, and keep the record with the challenger."""
    model_name = registration["model_name"]
    test = splits.loc[splits["split"] == TEST].set_index("sha256").loc[_test_images(splits)]
    images = [str(image_store.path(sha256)) for sha256 in test.index]
    truth = test["label"].tolist()
    challenger = {
        "version": registration["version"],
        "metrics": score(truth, _predicted_labels(registration["model_uri"], images)),
    }
    champion_version = alias_version(model_name, CHAMPION)
    champion = None
    if champion_version is not None:
        champion_uri = f"models:/{model_name}/{champion_version}"
        champion = {
            "version": champion_version,
            "metrics": score(truth, _predicted_labels(champion_uri, images)),
        }
    record = {
        "model_name": model_name,
        **decide(challenger, champion, PromotionRule.from_params(params.promotion.model_dump())),
    }
    if record["verdict"] == PROMOTED:
        set_alias(model_name, CHAMPION, registration["version"])
    markdown = render_decision(record)
    attach_decision(
        model_name,
        registration["version"],
        registration["run_id"],
        files={
            DECISION_FILE: (json.dumps(record, indent=2) + "\n").encode("utf-8"),
            DECISION_MARKDOWN_FILE: markdown.encode("utf-8"),
        },
        tags={"promotion_verdict": record["verdict"], "promotion_reason": record["reason"]},
    )
    return record, markdown


def _predicted_labels(model_uri: str, images: list[str]) -> list[str]:
    """Labels from the registered pyfunc model itself: what a client of that version gets."""
    predictions = load_model(model_uri).predict(pd.DataFrame({IMAGE_COLUMN: images}))
    return predictions["label"].tolist()


def _test_images(splits: pd.DataFrame) -> list[str]:
    return splits.loc[splits["split"] == TEST, "sha256"].sort_values().tolist()


def _materialise(partitions: dict[str, bytes | Callable[[], bytes]]) -> dict[str, bytes]:
    """A PartitionedDataset loads lazily, as {name: loader}; an in-memory one holds bytes."""
    return {name: part() if callable(part) else part for name, part in partitions.items()}
