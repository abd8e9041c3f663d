from pathlib import Path

import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[2]


def test_kedro_parameters_are_params_yaml() -> None:
    bootstrap_project(REPO)
    with KedroSession.create(project_path=REPO) as session:
        params = session.load_context().params
    # Kedro hands each typed section to the nodes as its model; the values are params.yaml's.
    values = {
        name: value.model_dump() if isinstance(value, BaseModel) else value
        for name, value in params.items()
    }
    assert values == yaml.safe_load((REPO / "params.yaml").read_text())


def test_runtime_params_override_params_yaml() -> None:
    bootstrap_project(REPO)
    with KedroSession.create(project_path=REPO, runtime_params={"train": {"max_epochs": 3}}) as s:
        params = s.load_context().params
    assert params["train"].max_epochs == 3
    assert params["train"].backbone == "efficientnet_lite0"


def test_no_parameters_file_in_conf() -> None:
    assert not list((REPO / "conf").rglob("parameters*"))
