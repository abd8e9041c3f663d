"""A typo in params.yaml stops `kedro run` before any node runs, naming the key and its section."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from helpers import copy_project, run

TYPOS: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    # In a section the split pipeline does not read: Kedro's own check covers only the
    # sections of the pipelines it runs.
    (
        lambda params: params["train"]["adversarial"].update(epsilom=0.01),
        "params.yaml: unknown key 'epsilom' in section 'train.adversarial'",
    ),
    (lambda params: params.update(trian={"max_epochs": 3}), "params.yaml: unknown section 'trian'"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy whose split stage has its input, so that nothing but the check stops it."""
    root = copy_project(tmp_path_factory.mktemp("typo") / "p")
    pd.DataFrame(
        {
            "sha256": [f"{index:064x}" for index in range(4)],
            "label": ["apple", "apple", "pear", "pear"],
            "coarse_label": ["fruit"] * 4,
            "pinned_split": ["train", "test", "train", "test"],
        }
    ).to_parquet(root / "data/03_primary/validated_manifest.parquet")
    return root


@pytest.mark.parametrize(("edit", "message"), TYPOS, ids=["nested-key", "top-level-section"])
def test_a_typo_stops_kedro_run_before_any_node(
    project: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    edit(params)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = run(project, "kedro", "run", "--pipelines", "split", check=False)
    finally:
        params_file.write_text(original)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output
    assert "Running node" not in output
    assert "Traceback" not in output
