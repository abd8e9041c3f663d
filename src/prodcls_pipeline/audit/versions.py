"""The registered model versions as an auditor reads them: registry entry, lineage record, the
images each version saw and its test predictions, all from the MLflow store alone."""

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from prodcls_pipeline.audit.errors import NoLineageError, VersionNotFoundError
from prodcls_pipeline.release.lineage import (
    IMAGES_FILE,
    PREDICTIONS_FILE,
    RECORD_FILE,
    version_artifact_path,
)
from prodcls_pipeline.release.registry import CHAMPION
from prodcls_serving.files import MODEL_CARD_FILE


@dataclass
class AuditedVersion:
    """One registered model version and its lineage record (None for versions registered
    before records were kept). Tables are downloaded on first use."""

    model_name: str
    number: int
    run_id: str
    registered_at: datetime
    aliases: list[str]
    tags: dict[str, str]
    record: dict[str, Any] | None
    client: MlflowClient = field(repr=False)

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases

    def require_record(self) -> dict[str, Any]:
        if self.record is None:
            raise NoLineageError(
                f"{self.model_name} v{self.number} has no lineage record (registered before "
                "records were kept): re-run the package stage to register an auditable version"
            )
        return self.record

    @cached_property
    def images(self) -> pd.DataFrame:
        """sha256, label, coarse_label, split, drop, source_path of every image it used."""
        return pd.read_parquet(self._artifact(IMAGES_FILE))

    @cached_property
    def test_predictions(self) -> pd.DataFrame:
        return pd.read_parquet(self._artifact(PREDICTIONS_FILE))

    @cached_property
    def model_card(self) -> str:
        return self._artifact(MODEL_CARD_FILE).read_text(encoding="utf-8")

    def _artifact(self, name: str) -> Path:
        self.require_record()
        folder = Path(tempfile.mkdtemp(prefix=f"prodcls-audit-v{self.number}-"))
        path = f"{version_artifact_path(self.number)}/{name}"
        return Path(self.client.download_artifacts(self.run_id, path, str(folder)))


class VersionStore:
    """The versions of one registered model in the current MLflow store."""

    def __init__(self, model_name: str, client: MlflowClient | None = None) -> None:
        self.model_name = model_name
        self.client = client or MlflowClient()

    def numbers(self) -> list[int]:
        try:
            found = self.client.search_model_versions(f"name='{self.model_name}'")
        except MlflowException:
            return []
        return sorted(int(version.version) for version in found)

    def all(self) -> list[AuditedVersion]:
        return [self.get(number) for number in self.numbers()]

    def get(self, number: int) -> AuditedVersion:
        try:
            entry = self.client.get_model_version(self.model_name, str(number))
        except MlflowException as error:
            known = ", ".join(f"v{n}" for n in self.numbers()) or "none"
            raise VersionNotFoundError(
                f"{self.model_name} has no version {number} (versions: {known})"
            ) from error
        return AuditedVersion(
            model_name=self.model_name,
            number=number,
            run_id=entry.run_id,
            registered_at=datetime.fromtimestamp(entry.creation_timestamp / 1000, tz=UTC),
            aliases=sorted(entry.aliases),
            tags=dict(entry.tags),
            record=self._record(entry.run_id, number),
            client=self.client,
        )

    def _record(self, run_id: str, number: int) -> dict[str, Any] | None:
        path = f"{version_artifact_path(number)}/{RECORD_FILE}"
        with tempfile.TemporaryDirectory() as folder:
            try:
                local = self.client.download_artifacts(run_id, path, folder)
            except (MlflowException, OSError):
                return None
            return json.loads(Path(local).read_text(encoding="utf-8"))
