"""Where MLflow keeps runs and the registry: sqlite under the project unless told otherwise.

Every stage, the CLI, the tests and the benchmarks point MLflow at a store through this module,
so the store a run was logged to is the store its model is registered in and read back from.
"""

import os
from pathlib import Path

import mlflow

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
STORE_FOLDER = "mlruns"
DATABASE_FILE = "mlflow.db"
SERVER_SCHEMES = ("http://", "https://")


def sqlite_tracking_uri(folder: Path) -> str:
    """The sqlite store `folder/mlflow.db`, by absolute path: relative sqlite URIs break under
    `dvc exp --temp`, and the file store is refused by current MLflow."""
    return f"sqlite:///{folder.resolve() / DATABASE_FILE}"


def tracking_uri(project_root: Path | None = None) -> str:
    """`$MLFLOW_TRACKING_URI`, else `sqlite:///<absolute project path>/mlruns/mlflow.db`."""
    if os.environ.get(TRACKING_URI_ENV):
        return os.environ[TRACKING_URI_ENV]
    store = (project_root or Path.cwd()).resolve() / STORE_FOLDER
    store.mkdir(parents=True, exist_ok=True)
    return sqlite_tracking_uri(store)


def set_tracking(uri: str | None = None, project_root: Path | None = None) -> str:
    """Point MLflow at `uri`, else at `tracking_uri(project_root)`; returns the URI it uses."""
    chosen = uri or tracking_uri(project_root)
    mlflow.set_tracking_uri(chosen)
    return chosen


def reset_tracking() -> None:
    """Forget the store set by `set_tracking`: MLflow falls back to its own default again."""
    mlflow.set_tracking_uri(None)


def artifact_location(project_root: Path | None = None) -> str:
    return ((project_root or Path.cwd()).resolve() / STORE_FOLDER / "artifacts").as_uri()


def is_tracking_server(uri: str) -> bool:
    """An MLflow server (not a store this process opens itself): it decides where artifacts go."""
    return uri.startswith(SERVER_SCHEMES)


def use_project_tracking(experiment_name: str, project_root: Path | None = None) -> str:
    """Point mlflow at the project's store and experiment; returns the experiment id. A new
    experiment keeps its artifacts under the project's store, or where a tracking server keeps
    them (every client of the server reads them there)."""
    uri = set_tracking(project_root=project_root)
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is not None:
        mlflow.set_experiment(experiment_name)
        return experiment.experiment_id
    experiment_id = mlflow.create_experiment(
        experiment_name,
        artifact_location=None if is_tracking_server(uri) else artifact_location(project_root),
    )
    mlflow.set_experiment(experiment_name)
    return experiment_id
