"""A new MLflow model version for a model package, logged into the run that trained it, and the
aliases that say which version is in service (`champion`) and which was registered last
(`challenger`).

Nothing here reaches the network: pip requirements are pinned from the installed versions, so
MLflow never infers or locks them, and the store is the project's sqlite file.
"""

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from prodcls_pipeline.core.tracking import set_tracking
from prodcls_serving.model import log_pyfunc_model

PACKAGE_ARTIFACT_PATH = "package"
DECISION_ARTIFACT_PATH = "promotion"
MODEL_ARTIFACT_NAME = "model"
CHALLENGER = "challenger"
CHAMPION = "champion"
# The version tag holding `release.package.served_digest` of the version's package.
SERVED_DIGEST_TAG = "served_digest"


@dataclass(frozen=True)
class DatasetInput:
    """A table logged as an MLflow dataset input whose digest is its DVC hash, so the run shows
    the data's real identity (MLflow's own digest hashes a prefix of the table only)."""

    table: pd.DataFrame
    name: str
    digest: str
    source: str
    context: str


class RunNotFoundError(LookupError):
    """The training run named in mlflow_run.json is not in this tracking store."""


def register_model_version(
    package: dict[str, bytes],
    run: dict[str, str],
    model_name: str,
    tags: dict[str, str],
    input_example_images: list[bytes],
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Log `package` into the training run as files and as a pyfunc model (images in, labels
    out), register that model as a new version and point the `challenger` alias at it.

    Returns {model_name, version, new_version: True, run_id, model_uri, source_uri,
    package_uri, tags}. The `champion` alias is left alone: promotion is a separate, gated
    decision.
    """
    set_tracking(tracking_uri)
    run_id = run["run_id"]
    _require_run(run)
    with tempfile.TemporaryDirectory() as folder, mlflow.start_run(run_id=run_id):
        package_dir = Path(folder) / PACKAGE_ARTIFACT_PATH
        _write_files(package, package_dir)
        mlflow.log_artifacts(str(package_dir), artifact_path=PACKAGE_ARTIFACT_PATH)
        logged = log_pyfunc_model(package_dir, MODEL_ARTIFACT_NAME, input_example_images)
    model_version = mlflow.register_model(logged.model_uri, model_name, tags=tags)
    version = int(model_version.version)
    set_alias(model_name, CHALLENGER, version)
    return _registration(model_name, version, run_id, logged.model_uri, tags, new_version=True)


def existing_registration(
    model_name: str, run_id: str, digest: str, tracking_uri: str | None = None
) -> dict[str, Any] | None:
    """The registration of the version `run_id` already registered with served digest
    `digest` (the latest, if several), with new_version False; None when there is none.

    The package stage re-runs when only what it records changed (a re-delivered drop, a new
    validation report): the model it would register is then one the registry already holds.
    """
    set_tracking(tracking_uri)
    try:
        versions = MlflowClient().search_model_versions(
            f"name='{model_name}' and run_id='{run_id}'"
        )
    except MlflowException:
        return None
    matching = [found for found in versions if found.tags.get(SERVED_DIGEST_TAG) == digest]
    if not matching:
        return None
    found = max(matching, key=lambda candidate: int(candidate.version))
    return _registration(
        model_name, int(found.version), run_id, found.source, found.tags, new_version=False
    )


def _registration(
    model_name: str,
    version: int,
    run_id: str,
    source_uri: str,
    tags: dict[str, str],
    new_version: bool,
) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "version": version,
        "new_version": new_version,
        "run_id": run_id,
        "model_uri": f"models:/{model_name}/{version}",
        "source_uri": source_uri,
        "package_uri": f"runs:/{run_id}/{PACKAGE_ARTIFACT_PATH}",
        "tags": dict(sorted(tags.items())),
    }


def recorded_json(run_id: str, artifact_file: str) -> dict[str, Any] | None:
    """A JSON artifact of `run_id` (a decision or lineage record), or None when absent."""
    try:
        return json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{artifact_file}"))
    except (MlflowException, OSError):
        return None


def decision_folder(version: int) -> str:
    """Where `attach_decision` keeps version `version`'s decision files in its run."""
    return f"{DECISION_ARTIFACT_PATH}/v{version}"


def _require_run(run: dict[str, str]) -> None:
    try:
        mlflow.get_run(run["run_id"])
    except MlflowException as error:
        raise RunNotFoundError(
            f"Training run {run['run_id']} is not in {mlflow.get_tracking_uri()} "
            f"(the train stage recorded {run.get('tracking_uri', 'no tracking URI')}). "
            "Re-run the train stage against this store, or set MLFLOW_TRACKING_URI to that one."
        ) from error


def _write_files(files: dict[str, bytes], folder: Path) -> None:
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _log_files(files: dict[str, bytes], artifact_path: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        _write_files(files, Path(folder))
        mlflow.log_artifacts(folder, artifact_path=artifact_path)


def alias_version(model_name: str, alias: str) -> int | None:
    """The version `alias` points at, or None when the alias (or the model) does not exist."""
    try:
        return int(MlflowClient().get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def version_run_id(model_name: str, version: int) -> str:
    """The run a registered version was logged from (where its decision files are kept)."""
    return MlflowClient().get_model_version(model_name, str(version)).run_id


def set_alias(model_name: str, alias: str, version: int) -> None:
    MlflowClient().set_registered_model_alias(model_name, alias, str(version))


def move_alias_from(model_name: str, alias: str, expected: int | None, version: int) -> bool:
    """Point `alias` at `version` only if it still points at `expected` (None: not set yet);
    whether it moved. A gate scores for minutes against the champion it read: read again just
    before the move, two package stages sharing a registry do not both promote against one
    champion (MLflow has no compare-and-set, so this narrows the window to one request)."""
    if alias_version(model_name, alias) != expected:
        return False
    set_alias(model_name, alias, version)
    return True


def attach_decision(
    model_name: str, version: int, run_id: str, files: dict[str, bytes], tags: dict[str, str]
) -> None:
    """Keep the promotion decision with the version it judged: files in its run, tags on it."""
    with mlflow.start_run(run_id=run_id):
        _log_files(files, decision_folder(version))
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, value)


def log_lineage(
    run_id: str, artifact_path: str, files: dict[str, bytes], inputs: list[DatasetInput]
) -> None:
    """A version's lineage files under `artifact_path` of its run, and its data as inputs."""
    with mlflow.start_run(run_id=run_id):
        _log_files(files, artifact_path)
        for data in inputs:
            with warnings.catch_warnings():
                # MLflow registers the local-path source twice and warns it is ambiguous.
                warnings.filterwarnings("ignore", "The specified dataset source can be")
                dataset = mlflow.data.from_pandas(
                    data.table, source=data.source, name=data.name, digest=data.digest
                )
            mlflow.log_input(dataset, context=data.context)
