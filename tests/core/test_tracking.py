"""The MLflow store is chosen in one place: $MLFLOW_TRACKING_URI, else the project's sqlite."""

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from prodcls_pipeline.core.tracking import (
    TRACKING_URI_ENV,
    reset_tracking,
    set_tracking,
    sqlite_tracking_uri,
    tracking_uri,
)


@pytest.fixture(autouse=True)
def _no_tracking_from_outside(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    yield
    reset_tracking()


def test_the_project_store_is_an_absolute_sqlite_uri_under_mlruns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert tracking_uri(Path(".")) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert (tmp_path / "mlruns").is_dir()
    assert sqlite_tracking_uri(Path("here")) == f"sqlite:///{tmp_path.resolve()}/here/mlflow.db"


def test_the_environment_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRACKING_URI_ENV, "sqlite:////elsewhere/mlflow.db")

    assert tracking_uri(tmp_path) == "sqlite:////elsewhere/mlflow.db"
    assert not (tmp_path / "mlruns").exists()


def test_set_tracking_points_mlflow_at_the_given_or_the_project_store(tmp_path: Path) -> None:
    given = sqlite_tracking_uri(tmp_path / "given")

    assert set_tracking(given) == given and mlflow.get_tracking_uri() == given
    project = set_tracking(project_root=tmp_path)
    assert project == tracking_uri(tmp_path) and mlflow.get_tracking_uri() == project
    reset_tracking()
    assert mlflow.get_tracking_uri() != project
