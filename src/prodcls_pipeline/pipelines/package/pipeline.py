"""Package stage: build the model package, then register it as a new MLflow model version."""

from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.package.nodes import build_model_package, register_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                build_model_package,
                inputs=[
                    "onnx_fp32",
                    "onnx_int8",
                    "classifier",
                    "metrics",
                    "classification_report",
                    "compression_report",
                    "validated_manifest",
                    "validated_manifest_file",
                    "validation_report",
                    "raw_drops",
                    "params:package",
                ],
                outputs="model_package",
                name="build_model_package",
            ),
            node(
                register_model,
                inputs=["model_package", "mlflow_run", "params:package"],
                outputs="registration",
                name="register_model",
            ),
        ]
    )
