"""Registration into a throwaway sqlite store, and the package pipeline end to end, offline."""

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from mlflow import MlflowClient
from test_packaging import IMAGE_SIZE, LABELS, LINEAGE, build_test_package, package_inputs

from prodcls_pipeline.lineage import dvc_dir_hash
from prodcls_pipeline.packaging import LINEAGE_FILE, TAG_KEYS, version_tags
from prodcls_pipeline.pipelines.package import create_pipeline
from prodcls_pipeline.pipelines.package.nodes import register_model
from prodcls_pipeline.registry import RunNotFoundError, register_model_version
from prodcls_pipeline.tracking import use_project_tracking

MODEL_NAME = "prodcls-test"
PARAMS = {"registered_model_name": MODEL_NAME, "variant": "int8"}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def training_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A finished run as the train stage leaves it, in a sqlite store under tmp_path."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    experiment_id = use_project_tracking("prodcls-test", project_root=tmp_path)
    with mlflow.start_run() as run:
        mlflow.log_param("backbone", "efficientnet_lite0")
    return {
        "run_id": run.info.run_id,
        "experiment_id": experiment_id,
        "experiment_name": "prodcls-test",
        "tracking_uri": uri,
    }


@pytest.fixture(scope="module")
def package() -> dict[str, bytes]:
    return build_test_package(model_name=MODEL_NAME)


def test_each_registration_is_a_new_tagged_version(
    package: dict[str, bytes], training_run: dict[str, str]
) -> None:
    tags = version_tags(json.loads(package[LINEAGE_FILE]))
    first = register_model_version(package, training_run, MODEL_NAME, tags)
    second = register_model_version(package, training_run, MODEL_NAME, tags)

    assert (first["version"], second["version"]) == (1, 2)
    assert second["model_uri"] == f"models:/{MODEL_NAME}/2"
    assert second["run_id"] == training_run["run_id"]
    client = MlflowClient()
    version = client.get_model_version(MODEL_NAME, "2")
    assert {key: version.tags[key] for key in TAG_KEYS} == tags
    assert version.tags["params_hash"] == LINEAGE["params_hash"]
    assert version.run_id == training_run["run_id"]
    assert client.get_registered_model(MODEL_NAME).aliases == {}

    packaged = {item.path for item in client.list_artifacts(training_run["run_id"], "package")}
    assert packaged == {f"package/{name}" for name in package}
    assert client.get_run(training_run["run_id"]).data.params == {"backbone": "efficientnet_lite0"}


def test_registered_model_serves_and_pins_its_requirements(
    package: dict[str, bytes], training_run: dict[str, str]
) -> None:
    tags = version_tags(json.loads(package[LINEAGE_FILE]))
    registered = register_model_version(package, training_run, MODEL_NAME, tags)

    model = mlflow.pyfunc.load_model(registered["model_uri"])
    images = np.zeros((2, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    assert model.predict({"images": images})["logits"].shape == (2, len(LABELS))
    requirements = Path(
        mlflow.artifacts.download_artifacts(f"{registered['model_uri']}/requirements.txt")
    ).read_text()
    assert "onnxruntime==" in requirements


def test_unknown_run_is_a_clear_error(
    package: dict[str, bytes], training_run: dict[str, str]
) -> None:
    with pytest.raises(RunNotFoundError, match="not in sqlite"):
        register_model_version(package, {**training_run, "run_id": "0" * 32}, MODEL_NAME, {})


def test_register_node_reads_lazy_partitions(
    package: dict[str, bytes], training_run: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lazy = {name: (lambda data=data: data) for name, data in package.items()}
    registration = register_model(lazy, training_run, PARAMS)
    assert registration["version"] == 1
    assert registration["tags"]["variant"] == "int8"


def test_package_pipeline_runs_on_memory_datasets(
    tmp_path: Path, training_run: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "drops" / "d1" / "apple").mkdir(parents=True)
    (project / "drops" / "d1" / "apple" / "1.jpg").write_bytes(b"\xff\xd8 jpeg bytes")
    (project / "params.yaml").write_text("package:\n  variant: int8\n")
    (project / "requirements.lock").write_text("onnx==1.23.0\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    inputs = {
        **package_inputs(),
        "validated_manifest_file": b"parquet bytes",
        "raw_drops": project / "drops",
        "mlflow_run": training_run,
        "params:package": PARAMS,
    }
    catalog = DataCatalog(
        {
            **{name: MemoryDataset(value) for name, value in inputs.items()},
            "model_package": MemoryDataset(),
            "registration": MemoryDataset(),
        }
    )

    outputs = SequentialRunner().run(create_pipeline(), catalog)

    registration = outputs["registration"].load()
    assert registration["model_uri"] == f"models:/{MODEL_NAME}/1"
    packaged = Path(mlflow.artifacts.download_artifacts(registration["package_uri"]))
    lineage = json.loads((packaged / LINEAGE_FILE).read_text())
    assert lineage["git_repo"] is False
    assert lineage["git_dirty"] is True
    assert lineage["manifest_dvc_hash"] == hashlib.md5(b"parquet bytes").hexdigest()
    assert lineage["raw_data_dvc_hash"] == dvc_dir_hash(project / "drops")
    assert lineage["params_hash"] == hashlib.sha256(b"package:\n  variant: int8\n").hexdigest()
    assert registration["tags"] == version_tags(lineage)
    card = (packaged / "MODEL_CARD.md").read_text()
    assert "not recorded (not a git repository)" in card
