"""A tiny real model package, logged as the pyfunc model and registered as the champion.

Shared by the serving, CLI and HTTP tests. The classifier scores each colour channel, so a solid
colour has a known label, and it is exported with the project's own ONNX exporter.
"""

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from prodcls_pipeline.models.onnx_export import export_onnx
from prodcls_pipeline.release.package import (
    LABEL_MAP_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    label_map,
    onnx_io,
    preprocessing_spec,
)
from prodcls_pipeline.release.tracking import TRACKING_URI_ENV, use_project_tracking
from prodcls_serving.model import log_pyfunc_model

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample" / "grocery-store-mini"
LABELS = ["red", "green", "blue"]
COARSE_LABELS = ["warm", "cool", "cool"]
INPUT_SIZE = 32
PREPROCESSING = {
    "input_size": INPUT_SIZE,
    "resize_size": 36,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
}
MODEL_NAME = "prodcls-test"
CHAMPION_URI = f"models:/{MODEL_NAME}@champion"


def colour_classifier() -> nn.Module:
    """Logit of class c = 4 × the mean of channel c: red, green and blue images are told apart."""
    linear = nn.Linear(3, len(LABELS))
    with torch.no_grad():
        linear.weight.copy_(4 * torch.eye(3))
        linear.bias.zero_()
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)


def write_package(directory: Path) -> Path:
    """The serving files of a package, written as the package stage writes them."""
    model = export_onnx(colour_classifier(), INPUT_SIZE)
    classifier = {"labels": LABELS, "coarse_labels": COARSE_LABELS}
    files = {
        MODEL_FILE: model,
        LABEL_MAP_FILE: json.dumps(label_map(classifier)).encode(),
        PREPROCESSING_FILE: json.dumps(preprocessing_spec(PREPROCESSING, onnx_io(model))).encode(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def sample_images(count: int) -> list[Path]:
    """The first `count` real photos of the bundled sample, in a stable order."""
    return sorted(SAMPLE_DIR.rglob("*.jpg"))[:count]


@contextmanager
def champion_registry(root: Path) -> Iterator[str]:
    """A sqlite store under `root` where MODEL_NAME@champion is the pyfunc model of a fresh
    package; yields its tracking URI, which is MLflow's (and $MLFLOW_TRACKING_URI) until exit.

    Logging and registering fail the test if they open any network connection.
    """
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TRACKING_URI_ENV, uri)
        with pytest.MonkeyPatch.context() as offline:
            offline.setattr(socket.socket, "connect", _refuse_connection)
            use_project_tracking("prodcls-serving-test", project_root=root)
            with mlflow.start_run():
                info = log_pyfunc_model(
                    write_package(root / "package"),
                    name="model",
                    input_example_images=[path.read_bytes() for path in sample_images(1)],
                )
            version = mlflow.register_model(info.model_uri, MODEL_NAME)
            MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", version.version)
        try:
            yield uri
        finally:
            # Later tests must not inherit this store through MLflow's global tracking URI.
            mlflow.set_tracking_uri(None)


def _refuse_connection(self: socket.socket, address: Any) -> None:
    raise AssertionError(f"network access attempted: {address}")
