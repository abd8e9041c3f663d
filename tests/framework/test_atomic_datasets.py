"""Every file the catalog saves is written whole or not at all: a save that fails half-way leaves
the previous file and no temporary one beside it."""

import json

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml
from helpers import REPO
from kedro.io import DatasetError
from kedro_datasets.json import JSONDataset

from prodcls_pipeline.framework import datasets
from prodcls_pipeline.framework.datasets import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
    AtomicParquetDataset,
    AtomicSave,
    AtomicTextDataset,
    BytesDataset,
)

FRAMEWORK_PREFIX = "prodcls_pipeline.framework.datasets."


def table() -> pd.DataFrame:
    return pd.DataFrame({"label": ["Kiwi", "Pear"], "count": [3, 4]})


def figure() -> plt.Figure:
    drawn, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    return drawn


@pytest.mark.parametrize(
    ("kind", "name", "data", "same"),
    [
        (AtomicJSONDataset, "report.json", {"top1": 0.9}, lambda a, b: a == b),
        (AtomicTextDataset, "report.md", "# Report\n", lambda a, b: a == b),
        (AtomicCSVDataset, "rows.csv", table(), lambda a, b: a.equals(b)),
        (AtomicParquetDataset, "rows.parquet", table(), lambda a, b: a.equals(b)),
    ],
)
def test_each_kind_saves_and_loads_leaving_only_its_file(tmp_path, kind, name, data, same):
    dataset = kind(filepath=str(tmp_path / "out" / name))
    dataset.save(data)
    dataset.save(data)

    assert same(dataset.load(), data)
    assert [path.name for path in (tmp_path / "out").iterdir()] == [name]


def test_a_figure_is_saved_as_a_png_and_nothing_else(tmp_path):
    AtomicMatplotlibDataset(filepath=str(tmp_path / "plot.png")).save(figure())

    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")
    assert [path.name for path in tmp_path.iterdir()] == ["plot.png"]


def half_serialisable() -> dict:
    # json.dump writes "top1" before it meets the object it cannot serialise.
    return {"top1": 0.9, "model": object()}


def test_a_save_that_fails_half_way_keeps_the_previous_file(tmp_path):
    path = tmp_path / "metrics.json"
    AtomicJSONDataset(filepath=str(path)).save({"top1": 0.8})

    with pytest.raises(DatasetError, match="not JSON serializable"):
        AtomicJSONDataset(filepath=str(path)).save(half_serialisable())

    assert json.loads(path.read_text()) == {"top1": 0.8}
    assert [entry.name for entry in tmp_path.iterdir()] == ["metrics.json"]


def test_the_stock_dataset_would_have_left_half_a_file(tmp_path):
    path = tmp_path / "metrics.json"
    JSONDataset(filepath=str(path)).save({"top1": 0.8})

    with pytest.raises(DatasetError):
        JSONDataset(filepath=str(path)).save(half_serialisable())

    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text())


def catalog_class(kind: str) -> type:
    assert kind.startswith(FRAMEWORK_PREFIX), kind
    return getattr(datasets, kind.removeprefix(FRAMEWORK_PREFIX))


def test_every_file_the_catalog_saves_goes_through_an_atomic_dataset():
    catalog = yaml.safe_load((REPO / "conf" / "base" / "catalog.yml").read_text())
    files = {name: entry["type"] for name, entry in catalog.items() if "filepath" in entry}
    partitions = {name: entry["dataset"] for name, entry in catalog.items() if "dataset" in entry}

    assert files and partitions
    for name, kind in (files | partitions).items():
        assert issubclass(catalog_class(kind), AtomicSave | BytesDataset), f"{name}: {kind}"
