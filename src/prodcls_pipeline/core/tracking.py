"""Where MLflow keeps runs and the registry: sqlite under the project unless told otherwise."""

import os
from pathlib import Path

import mlflow

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
STORE_FOLDER = "mlruns"


def tracking_uri(project_root: Path | None = None) -> str:
    """`$MLFLOW_TRACKING_URI`, else `sqlite:///<absolute project path>/mlruns/mlflow.db`.

    The path is absolute because relative sqlite URIs break under `dvc exp --temp`, and the
    file store is refused by current MLflow.
    """
    if os.environ.get(TRACKING_URI_ENV):
        return os.environ[TRACKING_URI_ENV]
    store = (project_root or Path.cwd()).resolve() / STORE_FOLDER
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def artifact_location(project_root: Path | None = None) -> str:
    return ((project_root or Path.cwd()).resolve() / STORE_FOLDER / "artifacts").as_uri()


def use_project_tracking(experiment_name: str, project_root: Path | None = None) -> str:
    """Point mlflow at the project's store and experiment; returns the experiment id."""
    mlflow.set_tracking_uri(tracking_uri(project_root))
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is not None:
        mlflow.set_experiment(experiment_name)
        return experiment.experiment_id
    experiment_id = mlflow.create_experiment(
        experiment_name, artifact_location=artifact_location(project_root)
    )
    mlflow.set_experiment(experiment_name)
    return experiment_id
