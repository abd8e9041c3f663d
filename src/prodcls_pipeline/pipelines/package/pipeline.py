"""Package stage: build the model package, register it as the challenger, gate its promotion."""

from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.package.nodes import (
    build_model_package,
    gate_promotion,
    record_lineage,
    register_model,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                build_model_package,
                inputs=[
                    "onnx_models",
                    "compression_report",
                    "classifier",
                    "metrics",
                    "classification_report",
                    "validated_manifest",
                    "validated_manifest_file",
                    "splits_file",
                    "validation_report",
                    "drops_version",
                    "params:package",
                    "params:ingest",
                ],
                outputs="model_package",
                name="build_model_package",
            ),
            node(
                register_model,
                inputs=["model_package", "mlflow_run", "splits", "image_store", "params:package"],
                outputs="registration",
                name="register_model",
            ),
            node(
                gate_promotion,
                inputs=["registration", "splits", "image_store", "params:package"],
                outputs=["promotion", "promotion_markdown"],
                name="gate_promotion",
            ),
            node(
                record_lineage,
                inputs=[
                    "registration",
                    "model_package",
                    "promotion",
                    "validation_report",
                    "metrics",
                    "per_class_metrics",
                    "splits",
                    "validated_manifest",
                    "test_predictions",
                    "parameters",
                    "classifier",
                ],
                outputs="lineage_record",
                name="record_lineage",
            ),
        ]
    )
