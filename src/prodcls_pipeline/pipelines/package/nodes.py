"""Package stage: the deployable model package, and its registered MLflow model version."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from prodcls_pipeline.lineage import collect_lineage
from prodcls_pipeline.packaging import LINEAGE_FILE, build_package, version_tags
from prodcls_pipeline.registry import register_model_version
from prodcls_pipeline.tracking import tracking_uri


def build_model_package(
    onnx_fp32: bytes,
    onnx_int8: bytes,
    classifier: dict[str, Any],
    metrics: dict[str, Any],
    classification_report: pd.DataFrame,
    compression_report: dict[str, Any],
    validated_manifest: pd.DataFrame,
    validated_manifest_file: bytes,
    validation_report: dict[str, Any],
    raw_drops: Path,
    params: dict[str, Any],
) -> dict[str, bytes]:
    # Kedro and DVC both run from the project root, so that is where git, params and locks live.
    lineage = collect_lineage(Path.cwd(), raw_drops, validated_manifest_file)
    return build_package(
        onnx_models={"fp32": onnx_fp32, "int8": onnx_int8},
        variant=params["variant"],
        model_name=params["registered_model_name"],
        classifier=classifier,
        metrics=metrics,
        per_class=classification_report,
        compression_report=compression_report,
        manifest=validated_manifest,
        validation_report=validation_report,
        lineage=lineage,
    )


def register_model(
    model_package: dict[str, bytes | Callable[[], bytes]],
    mlflow_run: dict[str, str],
    params: dict[str, Any],
) -> dict[str, Any]:
    package = _materialise(model_package)
    return register_model_version(
        package,
        mlflow_run,
        model_name=params["registered_model_name"],
        tags=version_tags(json.loads(package[LINEAGE_FILE])),
        tracking_uri=tracking_uri(Path.cwd()),
    )


def _materialise(partitions: dict[str, bytes | Callable[[], bytes]]) -> dict[str, bytes]:
    """A PartitionedDataset loads lazily, as {name: loader}; an in-memory one holds bytes."""
    return {name: part() if callable(part) else part for name, part in partitions.items()}
