"""Registration into a throwaway sqlite store, the promotion gate against it, and the package
pipeline end to end, offline."""

import hashlib
import io
import json
import socket
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from helpers import (
    LINEAGE,
    PACKAGE_LABELS,
    build_test_package,
    package_inputs,
    project_params,
)
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from mlflow import MlflowClient
from PIL import Image

from prodcls_pipeline.core.tracking import (
    TRACKING_URI_ENV,
    sqlite_tracking_uri,
    use_project_tracking,
)
from prodcls_pipeline.data.images import ImageStore
from prodcls_pipeline.data.versioning import drops_version, dvc_dir_hash
from prodcls_pipeline.framework.params import IngestParams, PackageParams
from prodcls_pipeline.pipelines.package import create_pipeline
from prodcls_pipeline.pipelines.package import nodes as package_nodes
from prodcls_pipeline.pipelines.package.nodes import gate_promotion, register_model
from prodcls_pipeline.release.package import (
    LINEAGE_FILE,
    PREPROCESSING_FILE,
    TAG_KEYS,
    version_tags,
)
from prodcls_pipeline.release.registry import RunNotFoundError, register_model_version

MODEL_NAME = "prodcls-test"
PARAMS = PackageParams.model_validate(
    {
        "registered_model_name": MODEL_NAME,
        "input_example_images": 2,
        "promotion": {"min_top1": 0.0, "min_gain": 0.0},
    }
)
TEST_IMAGES = 6
# The classifier's record of the champion its training started from.
WARM_START = {
    "policy": "champion",
    "from_version": 3,
    "from_run_id": "f" * 32,
    "checkpoint_sha256": "e" * 64,
    "fallback_reason": None,
}


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> tuple[pd.DataFrame, ImageStore]:
    """A test split of solid-colour JPEGs in a real image store, labelled from PACKAGE_LABELS."""
    store = ImageStore(tmp_path / "images")
    rows = []
    for index in range(TEST_IMAGES):
        data = jpeg((40 * index, 255 - 40 * index, 90))
        sha256 = hashlib.sha256(data).hexdigest()
        store.path(sha256).parent.mkdir(parents=True, exist_ok=True)
        store.path(sha256).write_bytes(data)
        rows.append(
            {
                "sha256": sha256,
                "label": PACKAGE_LABELS[index % len(PACKAGE_LABELS)],
                "coarse_label": "",
                "split": "test",
            }
        )
    rows.append(
        {"sha256": "0" * 64, "label": PACKAGE_LABELS[0], "coarse_label": "", "split": "train"}
    )
    return pd.DataFrame(rows), store


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def training_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A finished run as the train stage leaves it, in a sqlite store under tmp_path."""
    uri = sqlite_tracking_uri(tmp_path)
    monkeypatch.setenv(TRACKING_URI_ENV, uri)
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
    first = register_model_version(package, training_run, MODEL_NAME, tags, [])
    client = MlflowClient()
    assert client.get_registered_model(MODEL_NAME).aliases == {"challenger": 1}
    second = register_model_version(package, training_run, MODEL_NAME, tags, [])

    assert (first["version"], second["version"]) == (1, 2)
    assert second["model_uri"] == f"models:/{MODEL_NAME}/2"
    assert second["run_id"] == training_run["run_id"]
    version = client.get_model_version(MODEL_NAME, "2")
    assert {key: version.tags[key] for key in TAG_KEYS} == tags
    assert version.tags["params_hash"] == LINEAGE["params_hash"]
    assert version.run_id == training_run["run_id"]
    assert client.get_registered_model(MODEL_NAME).aliases == {"challenger": 2}

    packaged = {item.path for item in client.list_artifacts(training_run["run_id"], "package")}
    assert packaged == {f"package/{name}" for name in package}
    assert client.get_run(training_run["run_id"]).data.params == {"backbone": "efficientnet_lite0"}


def test_registered_model_takes_images_and_pins_its_requirements(
    package: dict[str, bytes], training_run: dict[str, str]
) -> None:
    tags = version_tags(json.loads(package[LINEAGE_FILE]))
    example = [jpeg((255, 0, 0)), jpeg((0, 0, 255))]
    registered = register_model_version(package, training_run, MODEL_NAME, tags, example)

    model = mlflow.pyfunc.load_model(registered["model_uri"])
    predictions = model.predict(pd.DataFrame({"image": example}))
    assert set(predictions["label"]) <= set(PACKAGE_LABELS)
    assert predictions["probability"].between(0, 1).all()
    requirements = Path(
        mlflow.artifacts.download_artifacts(f"{registered['model_uri']}/requirements.txt")
    ).read_text()
    assert "onnxruntime==" in requirements
    assert model.metadata.get_input_schema().input_names() == ["image"]
    assert model.metadata.saved_input_example_info is not None


def test_unknown_run_is_a_clear_error(
    package: dict[str, bytes], training_run: dict[str, str]
) -> None:
    with pytest.raises(RunNotFoundError, match="not in sqlite"):
        register_model_version(package, {**training_run, "run_id": "0" * 32}, MODEL_NAME, {}, [])


def test_register_node_reads_lazy_partitions(
    package: dict[str, bytes],
    training_run: dict[str, str],
    store: tuple[pd.DataFrame, ImageStore],
) -> None:
    lazy = {name: (lambda data=data: data) for name, data in package.items()}
    registration = register_model(lazy, training_run, *store, PARAMS)
    assert registration["version"] == 1
    assert registration["tags"]["variant"] == "int8"


def test_the_gate_promotes_on_the_floor_alone_then_demands_a_gain(
    package: dict[str, bytes],
    training_run: dict[str, str],
    store: tuple[pd.DataFrame, ImageStore],
) -> None:
    client = MlflowClient()
    first = register_model(package, training_run, *store, PARAMS)
    record, markdown = gate_promotion(first, *store, PARAMS)
    assert record["verdict"] == "promoted" and record["champion"] is None
    assert record["reason"].startswith("no champion yet")
    assert client.get_registered_model(MODEL_NAME).aliases == {"champion": 1, "challenger": 1}

    strict = PackageParams.model_validate(
        {**PARAMS.model_dump(), "promotion": {"min_top1": 0.0, "min_gain": 0.01}}
    )
    # The same predictions from a package whose served files differ by one byte.
    repackaged = {**package, PREPROCESSING_FILE: package[PREPROCESSING_FILE] + b"\n"}
    second = register_model(repackaged, training_run, *store, strict)
    record, markdown = gate_promotion(second, *store, strict)

    # The same model re-scored on the same images: no gain, so the champion stays.
    assert record["verdict"] == "rejected"
    assert record["champion"]["version"] == 1
    assert record["champion"]["metrics"] == record["challenger"]["metrics"]
    assert record["challenger"]["metrics"]["test_images"] == TEST_IMAGES
    assert "gain +0.0000 falls short of the minimum +0.0100" in record["reason"]
    assert client.get_registered_model(MODEL_NAME).aliases == {"champion": 1, "challenger": 2}
    version = client.get_model_version(MODEL_NAME, "2")
    assert version.tags["promotion_verdict"] == "rejected"
    assert version.tags["promotion_reason"] == record["reason"]
    attached = mlflow.artifacts.download_artifacts(
        run_id=training_run["run_id"], artifact_path="promotion/v2"
    )
    assert json.loads((Path(attached) / "promotion.json").read_text()) == record
    assert (Path(attached) / "promotion.md").read_text() == markdown


def test_a_champion_moved_while_the_gate_scored_is_not_overwritten(
    package: dict[str, bytes],
    training_run: dict[str, str],
    store: tuple[pd.DataFrame, ImageStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = register_model(package, training_run, *store, PARAMS)
    repackaged = {**package, PREPROCESSING_FILE: package[PREPROCESSING_FILE] + b"\n"}
    second = register_model(repackaged, training_run, *store, PARAMS)
    real_decide = package_nodes.decide

    def another_gate_promotes_meanwhile(*args: Any) -> dict[str, Any]:
        MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", str(second["version"]))
        return real_decide(*args)

    monkeypatch.setattr(package_nodes, "decide", another_gate_promotes_meanwhile)
    record, markdown = gate_promotion(first, *store, PARAMS)

    assert record["verdict"] == "rejected" and record["champion"] is None
    assert record["reason"].startswith(
        "the champion moved while this gate scored against no champion"
    )
    assert MlflowClient().get_registered_model(MODEL_NAME).aliases["champion"] == 2
    assert "**Verdict: rejected.**" in markdown


def test_the_gate_predicts_only_the_test_images_the_champion_has_not_served(
    package: dict[str, bytes],
    training_run: dict[str, str],
    store: tuple[pd.DataFrame, ImageStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = register_model(package, training_run, *store, PARAMS)
    gate_promotion(first, *store, PARAMS)
    predicted: dict[str, int] = {}
    load_model = package_nodes.load_model

    def counting_load_model(model_uri: str) -> Any:
        model = load_model(model_uri)
        predict = model.predict

        def counted(frame: pd.DataFrame) -> pd.DataFrame:
            predicted[model_uri] = predicted.get(model_uri, 0) + len(frame)
            return predict(frame)

        model.predict = counted
        return model

    monkeypatch.setattr(package_nodes, "load_model", counting_load_model)
    repackaged = {**package, PREPROCESSING_FILE: package[PREPROCESSING_FILE] + b"\n"}
    second = register_model(repackaged, training_run, *store, PARAMS)
    record, _ = gate_promotion(second, *store, PARAMS)

    assert predicted == {f"models:/{MODEL_NAME}/2": TEST_IMAGES}, "v1's labels were recorded"
    assert record["champion"]["metrics"] == record["challenger"]["metrics"]


def test_a_package_already_registered_registers_nothing_and_keeps_its_decision(
    package: dict[str, bytes],
    training_run: dict[str, str],
    store: tuple[pd.DataFrame, ImageStore],
) -> None:
    client = MlflowClient()
    first = register_model(package, training_run, *store, PARAMS)
    decision = gate_promotion(first, *store, PARAMS)
    assert first["new_version"] is True and first["tags"]["served_digest"]

    again = register_model(package, training_run, *store, PARAMS)

    assert {**again, "tags": None} == {**first, "new_version": False, "tags": None}
    # The version's tags now also hold its promotion verdict.
    assert first["tags"].items() <= again["tags"].items()
    assert len(client.search_model_versions(f"name='{MODEL_NAME}'")) == 1
    assert gate_promotion(again, *store, PARAMS) == decision
    assert client.get_registered_model(MODEL_NAME).aliases == {"champion": 1, "challenger": 1}


def test_package_pipeline_runs_on_memory_datasets(
    tmp_path: Path,
    training_run: dict[str, str],
    store: tuple[pd.DataFrame, ImageStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = tmp_path / "project"
    (project / "drops" / "d1" / "apple").mkdir(parents=True)
    (project / "drops" / "d1" / "apple" / "1.jpg").write_bytes(b"\xff\xd8 jpeg bytes")
    (project / "params.yaml").write_text("package:\n  registered_model_name: x\n")
    (project / "requirements.lock").write_text("onnx==1.23.0\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    inputs = {
        **package_inputs(),
        "validated_manifest_file": b"parquet bytes",
        "splits_file": b"splits bytes",
        "drops_version": drops_version(project / "drops"),
        "mlflow_run": training_run,
        "splits": store[0],
        "image_store": store[1],
        "test_predictions": store[0].assign(predicted=store[0]["label"]),
        "params:package": PARAMS,
        # The synthetic photos are a few pixels across: the package's smallest side is 1.
        "params:ingest": IngestParams.model_validate(
            {**project_params()["ingest"], "min_source_side": 1}
        ),
        "parameters": {"package": PARAMS, "seed": 7},
        "classifier": {**package_inputs()["classifier"], "warm_start": WARM_START},
    }
    catalog = DataCatalog(
        {
            **{name: MemoryDataset(value) for name, value in inputs.items()},
            "model_package": MemoryDataset(),
            "registration": MemoryDataset(),
            "promotion": MemoryDataset(),
            "promotion_markdown": MemoryDataset(),
            "lineage_record": MemoryDataset(),
        }
    )

    outputs = SequentialRunner().run(create_pipeline(), catalog)

    record = outputs["lineage_record"].load()
    assert record["gates"]["promotion"]["verdict"] == "promoted" and record["version"] == 1
    assert "**Verdict: promoted.**" in outputs["promotion_markdown"].load()
    registered = MlflowClient().get_model_version(MODEL_NAME, "1")
    packaged = Path(
        mlflow.artifacts.download_artifacts(run_id=registered.run_id, artifact_path="package")
    )
    lineage = json.loads((packaged / LINEAGE_FILE).read_text())
    assert lineage["git_repo"] is False
    assert lineage["git_dirty"] is True
    assert lineage["manifest_dvc_hash"] == hashlib.md5(b"parquet bytes").hexdigest()
    assert lineage["raw_data_dvc_hash"] == dvc_dir_hash(project / "drops")
    params_file = b"package:\n  registered_model_name: x\n"
    assert lineage["params_hash"] == hashlib.sha256(params_file).hexdigest()
    assert {key: registered.tags[key] for key in TAG_KEYS} == version_tags(lineage)
    card = (packaged / "MODEL_CARD.md").read_text()
    assert "not recorded (not a git repository)" in card

    kept = Path(
        mlflow.artifacts.download_artifacts(run_id=registered.run_id, artifact_path="lineage/v1")
    )
    assert json.loads((kept / "record.json").read_text()) == record
    assert record["version"] == 1 and record["parent_champion"] is None
    assert record["warm_start"] == WARM_START
    assert record["data"]["drops"] == [
        {
            "drop": "d1",
            "dvc_hash": dvc_dir_hash(project / "drops" / "d1"),
            "files": 1,
            "bytes": 13,
            "tracked": False,
            "dvc_file": "",
        }
    ]
    assert record["data"]["splits_dvc_hash"] == hashlib.md5(b"splits bytes").hexdigest()
    assert record["params"]["file"] == params_file.decode()
    assert record["params"]["values"]["package"]["registered_model_name"] == MODEL_NAME
    assert record["gates"]["promotion"]["verdict"] == "promoted"
    assert record["gates"]["validation"]["success"] is True
    assert record["per_class"] == package_inputs()["per_class_metrics"]
    assert pd.read_parquet(kept / "images.parquet")["sha256"].tolist() == sorted(store[0]["sha256"])
    assert (kept / "MODEL_CARD.md").read_text() == card
    inputs_logged = {
        logged.dataset.name: logged.dataset.digest
        for logged in mlflow.get_run(registered.run_id).inputs.dataset_inputs
    }
    assert inputs_logged == {
        "d1": dvc_dir_hash(project / "drops" / "d1"),
        "splits": hashlib.md5(b"splits bytes").hexdigest(),
    }
