"""Every catalog entry names the data layer of its folder, for kedro-viz."""

import re
from pathlib import Path
from typing import Any

import pytest
from kedro.config import OmegaConfigLoader

REPO = Path(__file__).resolve().parents[2]

# Kedro's layer names, keyed by the data folder that holds each layer's files.
LAYER_OF_FOLDER = {
    "01_raw": "raw",
    "02_intermediate": "intermediate",
    "03_primary": "primary",
    "04_feature": "feature",
    "06_models": "models",
    "07_model_output": "model_output",
    "08_reporting": "reporting",
}
LAYERS = list(LAYER_OF_FOLDER.values())
# Reports that a later stage reads take the layer of the data they describe: left in
# `reporting`, each would make reporting feed model_output (or primary, or models) and back,
# and kedro-viz turns its layer view off when the layers form a cycle.
READ_BY_A_LATER_STAGE = {
    "validation_report": "primary",
    "training_history": "models",
    "metrics": "model_output",
    "classification_report": "model_output",
    "compression_report": "model_output",
    "reliability": "model_output",
}
DATA_FOLDER = re.compile(r"^data/(?P<folder>[^/]+)/")


def _catalog() -> dict[str, dict[str, Any]]:
    # conf/base alone: conf/local is a developer's own and is not committed.
    return OmegaConfigLoader(str(REPO / "conf"), base_env="base", default_run_env="base")["catalog"]


CATALOG = _catalog()


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_entry_names_the_layer_of_its_data_folder(name: str) -> None:
    entry = CATALOG[name]
    layer = entry.get("metadata", {}).get("kedro-viz", {}).get("layer")
    assert layer in LAYERS, f"{name}: metadata.kedro-viz.layer is {layer!r}, not one of {LAYERS}"
    location = DATA_FOLDER.match(entry.get("filepath", entry.get("path", "")))
    if name in READ_BY_A_LATER_STAGE:
        assert layer == READ_BY_A_LATER_STAGE[name]
    elif location:
        assert layer == LAYER_OF_FOLDER.get(location["folder"]), (
            f"{name}: layer {layer!r} but its files are in data/{location['folder']}/"
        )
