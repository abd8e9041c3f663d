"""Kedro datasets that stock kedro-datasets lack: folder handles, bytes, checkpoints, and the
stock file datasets made atomic.

Content-addressed stores (normalised images, embeddings, checkpoints) are folders that grow by
hash. Their dataset loads a handle; the node that fills the store writes through it,
idempotently, and never deletes. DVC keeps these folders with `persist: true` for re-runs.
"""

import io
from importlib import import_module
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import torch
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset
from kedro_datasets.text import TextDataset

from prodcls_pipeline.core.files import atomic_path, atomic_write


class FolderDataset(AbstractDataset[None, Path]):
    """A read-only folder (such as the raw drops): loads as its absolute path."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def _load(self) -> Path:
        if not self._path.is_dir():
            raise DatasetError(f"Folder {self._path} does not exist")
        return self._path.resolve()

    def _save(self, data: None) -> None:
        raise DatasetError(f"{self._path} is read-only input: raw data is never modified")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class StoreDataset(FolderDataset):
    """A content-addressed store folder: loads as a handle of the class the catalog names.

    The class is named, not imported here, so the Kedro glue depends on no area of the project
    and each DVC stage depends only on the stores its own datasets name.
    """

    def __init__(self, path: str, store: str, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(path, metadata)
        self._store = store

    def _load(self) -> Any:
        module_name, _, class_name = self._store.rpartition(".")
        return getattr(import_module(module_name), class_name)(self._path)

    def _save(self, data: None) -> None:
        raise DatasetError(f"Write to {self._path} through its {self._store} handle")

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "store": self._store}


class BytesDataset(AbstractDataset[bytes, bytes]):
    """A file's raw bytes (ONNX models, PNGs made in memory)."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _load(self) -> bytes:
        return self._filepath.read_bytes()

    def _save(self, data: bytes) -> None:
        atomic_write(self._filepath, data)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class TorchCheckpointDataset(BytesDataset):
    """A dict of tensors and plain values, saved with torch.save and loaded weights-only."""

    def _load(self) -> dict[str, Any]:  # type: ignore[override]
        return torch.load(io.BytesIO(super()._load()), weights_only=True)

    def _save(self, data: dict[str, Any]) -> None:  # type: ignore[override]
        buffer = io.BytesIO()
        torch.save(data, buffer)
        super()._save(buffer.getvalue())


class AtomicSave:
    """Makes a stock local file dataset save whole or not at all: it writes a temporary file
    beside its own, then renames that over it. A run killed mid-save (a `kedro run` by hand has
    no `dvc.lock` to discard what a killed stage began) leaves the previous file, never half of a
    new one. Mixed in before the stock class, whose `save` writes wherever `_get_save_path`
    says."""

    _saving_to: Path | None = None

    def _get_save_path(self) -> PurePosixPath:
        if self._saving_to is not None:
            return PurePosixPath(self._saving_to)
        return super()._get_save_path()  # type: ignore[misc]

    def save(self, data: Any) -> None:
        with atomic_path(Path(self._get_save_path())) as temporary:
            self._saving_to = temporary
            try:
                super().save(data)  # type: ignore[misc]
            finally:
                self._saving_to = None


class AtomicJSONDataset(AtomicSave, JSONDataset):
    """kedro-datasets' `json.JSONDataset`, saved atomically."""


class AtomicTextDataset(AtomicSave, TextDataset):
    """kedro-datasets' `text.TextDataset`, saved atomically."""


class AtomicCSVDataset(AtomicSave, CSVDataset):
    """kedro-datasets' `pandas.CSVDataset`, saved atomically."""


class AtomicParquetDataset(AtomicSave, ParquetDataset):
    """kedro-datasets' `pandas.ParquetDataset`, saved atomically."""


class AtomicMatplotlibDataset(AtomicSave, MatplotlibDataset):
    """kedro-datasets' `matplotlib.MatplotlibDataset` of one figure, saved atomically."""


class OptionalParquetDataset(AtomicParquetDataset):
    """A parquet table that may not exist yet (first run): loads as an empty DataFrame then."""

    def load(self) -> pd.DataFrame:
        if not self._exists():
            return pd.DataFrame()
        return super().load()
