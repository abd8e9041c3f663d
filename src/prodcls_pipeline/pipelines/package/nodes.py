"""Package stage: the deployable model package, its registered MLflow model version (alias
`challenger`), and the gate that decides whether it becomes `champion`."""

import json
import logging
from base64 import b64encode
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from prodcls_pipeline.core.schema import TEST
from prodcls_pipeline.core.tracking import tracking_uri
from prodcls_pipeline.data.images import ImageStore, IngestSettings
from prodcls_pipeline.framework.params import IngestParams, PackageParams, plain_params
from prodcls_pipeline.release.lineage import (
    IMAGES_FILE,
    PREDICTIONS_FILE,
    RECORD_FILE,
    collect_lineage,
    image_table,
    lineage_record,
    version_artifact_path,
)
from prodcls_pipeline.release.package import (
    LINEAGE_FILE,
    build_package,
    served_digest,
    version_tags,
)
from prodcls_pipeline.release.promotion import (
    PROMOTED,
    REJECTED,
    PromotionRule,
    decide,
    render_decision,
    score,
)
from prodcls_pipeline.release.registry import (
    CHAMPION,
    SERVED_DIGEST_TAG,
    DatasetInput,
    alias_version,
    attach_decision,
    decision_folder,
    existing_registration,
    log_lineage,
    move_alias_from,
    recorded_json,
    register_model_version,
    version_run_id,
)
from prodcls_serving.files import MODEL_CARD_FILE
from prodcls_serving.model import IMAGE_COLUMN, load_model

DECISION_FILE = "promotion.json"
DECISION_MARKDOWN_FILE = "promotion.md"
# sha256 -> label the version served on the test images it was judged on: a later gate reuses them
# when the version is the champion, and predicts only the test images added since.
SERVED_PREDICTIONS_FILE = "served_predictions.json"
# How the version's data inputs are named in MLflow: where DVC keeps them.
DROPS_SOURCE = "data/01_raw/drops"
DROP_CONTEXT = "drop"
SPLITS_DATASET = "splits"
SPLITS_SOURCE = "data/03_primary/splits.parquet"

logger = logging.getLogger(__name__)


def build_model_package(
    onnx_models: dict[str, bytes | Callable[[], bytes]],
    compression_report: dict[str, Any],
    classifier: dict[str, Any],
    metrics: dict[str, Any],
    classification_report: pd.DataFrame,
    validated_manifest: pd.DataFrame,
    validated_manifest_file: bytes,
    splits_file: bytes,
    validation_report: dict[str, Any],
    drops_version: dict[str, Any],
    params: PackageParams,
    ingest: IngestParams,
) -> dict[str, bytes]:
    """The package; served images are held to the limits the training images were ingested
    under."""
    # Kedro and DVC both run from the project root, so that is where git, params and locks live.
    lineage = collect_lineage(Path.cwd(), drops_version, validated_manifest_file, splits_file)
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
    """A new model version with alias `challenger`; test images make its input example.

    When the training run already registered a version serving exactly these files (the stage
    re-ran for a drop that added no new image and label), that version is returned instead and
    the registry is left as it is.
    """
    package = _materialise(model_package)
    digest = served_digest(package)
    existing = existing_registration(
        params.registered_model_name, mlflow_run["run_id"], digest, tracking_uri(Path.cwd())
    )
    if existing is not None:
        logger.info(
            "Version %s already serves this model: nothing new to register, the registry is "
            "left as it is",
            existing["version"],
        )
        return existing
    examples = _test_images(splits)[: params.input_example_images]
    return register_model_version(
        package,
        mlflow_run,
        model_name=params.registered_model_name,
        tags=version_tags(json.loads(package[LINEAGE_FILE])) | {SERVED_DIGEST_TAG: digest},
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
    move the `champion` alias only on promotion, and keep the record with the challenger.

    A version registered before was judged then: its recorded decision stands.
    """
    if not registration["new_version"]:
        recorded = recorded_json(
            registration["run_id"], f"{decision_folder(registration['version'])}/{DECISION_FILE}"
        )
        if recorded is not None:
            return recorded, render_decision(recorded)
    model_name = registration["model_name"]
    test = splits.loc[splits["split"] == TEST].set_index("sha256").loc[_test_images(splits)]
    truth = test["label"].tolist()
    served = _served_labels(registration["model_uri"], test.index, image_store, {})
    challenger = {"version": registration["version"], "metrics": score(truth, served)}
    champion_version = alias_version(model_name, CHAMPION)
    champion = None
    if champion_version is not None:
        recorded = recorded_json(
            version_run_id(model_name, champion_version),
            f"{decision_folder(champion_version)}/{SERVED_PREDICTIONS_FILE}",
        )
        champion_labels = _served_labels(
            f"models:/{model_name}/{champion_version}", test.index, image_store, recorded or {}
        )
        champion = {"version": champion_version, "metrics": score(truth, champion_labels)}
    record = {
        "model_name": model_name,
        **decide(challenger, champion, PromotionRule.from_params(params.promotion.model_dump())),
    }
    if record["verdict"] == PROMOTED and not move_alias_from(
        model_name, CHAMPION, champion_version, registration["version"]
    ):
        record |= {
            "verdict": REJECTED,
            "reason": "the champion moved while this gate scored against "
            + (f"v{champion_version}" if champion_version is not None else "no champion")
            + ": `dvc repro -f package` judges against the new one",
        }
    markdown = render_decision(record)
    attach_decision(
        model_name,
        registration["version"],
        registration["run_id"],
        files={
            DECISION_FILE: (json.dumps(record, indent=2) + "\n").encode("utf-8"),
            DECISION_MARKDOWN_FILE: markdown.encode("utf-8"),
            SERVED_PREDICTIONS_FILE: json.dumps(dict(zip(test.index, served, strict=True))).encode(
                "utf-8"
            ),
        },
        tags={"promotion_verdict": record["verdict"], "promotion_reason": record["reason"]},
    )
    return record, markdown


def record_lineage(
    registration: dict[str, Any],
    model_package: dict[str, bytes | Callable[[], bytes]],
    promotion: dict[str, Any],
    validation_report: dict[str, Any],
    metrics: dict[str, Any],
    per_class_metrics: dict[str, dict[str, Any]],
    splits: pd.DataFrame,
    validated_manifest: pd.DataFrame,
    test_predictions: pd.DataFrame,
    parameters: dict[str, Any],
    classifier: dict[str, Any],
) -> dict[str, Any]:
    """The version's lineage record, images table and test predictions, kept in its run under
    lineage/v<N>/, with each drop and the splits logged as MLflow datasets digested by DVC hash;
    the classifier's record says which champion, if any, its training started from.

    A version registered before keeps the record it was registered with.
    """
    if not registration["new_version"]:
        recorded = recorded_json(
            registration["run_id"],
            f"{version_artifact_path(registration['version'])}/{RECORD_FILE}",
        )
        if recorded is not None:
            return recorded
    # Two files of the package are needed, not the models: load only those partitions.
    package = _materialise({name: model_package[name] for name in (LINEAGE_FILE, MODEL_CARD_FILE)})
    package_lineage = json.loads(package[LINEAGE_FILE])
    images = image_table(splits, validated_manifest)
    record = lineage_record(
        registration=registration,
        package_lineage=package_lineage,
        promotion=promotion,
        validation_report=validation_report,
        metrics=metrics,
        per_class=per_class_metrics,
        images=images,
        parameters=plain_params(parameters),
        root=Path.cwd(),
        # Classifiers trained before warm starts existed carry no record.
        warm_start=classifier.get("warm_start"),
    )
    log_lineage(
        registration["run_id"],
        version_artifact_path(registration["version"]),
        files={
            RECORD_FILE: (json.dumps(record, indent=2) + "\n").encode("utf-8"),
            IMAGES_FILE: images.to_parquet(index=False),
            PREDICTIONS_FILE: test_predictions.to_parquet(index=False),
            MODEL_CARD_FILE: package[MODEL_CARD_FILE],
        },
        inputs=_dataset_inputs(package_lineage, validated_manifest, images),
    )
    return record


def _dataset_inputs(
    lineage: dict[str, Any], validated_manifest: pd.DataFrame, images: pd.DataFrame
) -> list[DatasetInput]:
    """Each drop's manifest rows under its DVC hash, and the splits under theirs."""
    drops = [
        DatasetInput(
            table=validated_manifest.loc[validated_manifest["drop"] == drop["drop"]],
            name=drop["drop"],
            digest=drop["dvc_hash"],
            source=f"{DROPS_SOURCE}/{drop['drop']}",
            context=DROP_CONTEXT,
        )
        for drop in lineage["drops"]
    ]
    splits = DatasetInput(
        table=images,
        name=SPLITS_DATASET,
        digest=lineage["splits_dvc_hash"],
        source=SPLITS_SOURCE,
        context=SPLITS_DATASET,
    )
    return [*drops, splits]


def _served_labels(
    model_uri: str, sha256s: Sequence[str], image_store: ImageStore, recorded: dict[str, str]
) -> list[str]:
    """Labels from the registered pyfunc model itself (what a client of that version gets) for
    each image; `recorded` are labels the same version served before (a version is immutable),
    so only the test images added since are predicted."""
    missing = [sha256 for sha256 in sha256s if sha256 not in recorded]
    if missing:
        # Sent as a client sends them: a served model reads no paths.
        images = [b64encode(image_store.path(sha256).read_bytes()).decode() for sha256 in missing]
        predictions = load_model(model_uri).predict(pd.DataFrame({IMAGE_COLUMN: images}))
        recorded = {**recorded, **dict(zip(missing, predictions["label"], strict=True))}
    logger.info(
        "%s: %d test images predicted, %d recorded",
        model_uri,
        len(missing),
        len(sha256s) - len(missing),
    )
    return [recorded[sha256] for sha256 in sha256s]


def _test_images(splits: pd.DataFrame) -> list[str]:
    return splits.loc[splits["split"] == TEST, "sha256"].sort_values().tolist()


def _materialise(partitions: dict[str, bytes | Callable[[], bytes]]) -> dict[str, bytes]:
    """A PartitionedDataset loads lazily, as {name: loader}; an in-memory one holds bytes."""
    return {name: part() if callable(part) else part for name, part in partitions.items()}
