"""A new MLflow model version for a model package, logged into the run that trained it.

Nothing here reaches the network: pip requirements are pinned from the installed versions, so
MLflow never infers or locks them, and the store is the project's sqlite file. Giving MLflow the
signature and the requirements up front is also what keeps its log_model warnings away.
"""

import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.onnx
import numpy as np
import onnx
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from prodcls_pipeline.packaging import MODEL_FILE, onnx_io
from prodcls_pipeline.tracking import tracking_uri as project_tracking_uri

PACKAGE_ARTIFACT_PATH = "package"
MODEL_ARTIFACT_NAME = "model"
# What the ONNX pyfunc flavour needs at serving time; mlflow itself is added by MLflow.
SERVING_PACKAGES = ("onnx", "onnxruntime")


class RunNotFoundError(LookupError):
    """The training run named in mlflow_run.json is not in this tracking store."""


def register_model_version(
    package: dict[str, bytes],
    run: dict[str, str],
    model_name: str,
    tags: dict[str, str],
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Log `package` into the training run and register its ONNX model as a new version.

    Returns {model_name, version, run_id, model_uri, source_uri, package_uri, tags}. Aliases are
    left alone: promotion is a separate, gated decision.
    """
    mlflow.set_tracking_uri(tracking_uri or project_tracking_uri())
    run_id = run["run_id"]
    _require_run(run)
    model = package[MODEL_FILE]
    with mlflow.start_run(run_id=run_id):
        _log_files(package, PACKAGE_ARTIFACT_PATH)
        logged = mlflow.onnx.log_model(
            onnx.load_from_string(model),
            name=MODEL_ARTIFACT_NAME,
            signature=onnx_signature(model),
            pip_requirements=pinned_requirements(),
            save_as_external_data=False,
        )
    model_version = mlflow.register_model(logged.model_uri, model_name, tags=tags)
    return {
        "model_name": model_name,
        "version": int(model_version.version),
        "run_id": run_id,
        "model_uri": f"models:/{model_name}/{model_version.version}",
        "source_uri": logged.model_uri,
        "package_uri": f"runs:/{run_id}/{PACKAGE_ARTIFACT_PATH}",
        "tags": dict(tags),
    }


def onnx_signature(model: bytes) -> ModelSignature:
    """The MLflow signature of an ONNX model's input and output; symbolic dims are -1."""
    io_spec = onnx_io(model)
    return ModelSignature(
        inputs=Schema([_tensor_spec(io_spec, "input")]),
        outputs=Schema([_tensor_spec(io_spec, "output")]),
    )


def pinned_requirements() -> list[str]:
    return [f"{package}=={installed_version(package)}" for package in SERVING_PACKAGES]


def _tensor_spec(io_spec: dict[str, Any], side: str) -> TensorSpec:
    shape = io_spec[f"{side}_shape"]
    dims = tuple(dim if isinstance(dim, int) and dim > 0 else -1 for dim in shape)
    return TensorSpec(np.dtype(io_spec[f"{side}_dtype"]), dims, io_spec[f"{side}_name"])


def _require_run(run: dict[str, str]) -> None:
    try:
        mlflow.get_run(run["run_id"])
    except MlflowException as error:
        raise RunNotFoundError(
            f"Training run {run['run_id']} is not in {mlflow.get_tracking_uri()} "
            f"(the train stage recorded {run.get('tracking_uri', 'no tracking URI')}). "
            "Re-run the train stage against this store, or set MLFLOW_TRACKING_URI to that one."
        ) from error


def _log_files(files: dict[str, bytes], artifact_path: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            target = Path(folder) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        mlflow.log_artifacts(folder, artifact_path=artifact_path)
