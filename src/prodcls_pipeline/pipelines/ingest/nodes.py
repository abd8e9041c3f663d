"""Ingest: every file of every drop becomes a manifest row; images are decoded and stored unless
the image store holds a decision for them that the ingest settings leave standing. The drops'
DVC versions are recorded here, the one stage that reads the drops folder, for the lineage."""

from pathlib import Path
from typing import Any

import pandas as pd

from prodcls_pipeline.data.drops import build_manifest, scan_drops
from prodcls_pipeline.data.images import ImageStore, IngestSettings
from prodcls_pipeline.data.versioning import drops_version, find_dvc_root
from prodcls_pipeline.framework.params import IngestParams


def ingest_drops(raw_drops: Path, image_store: ImageStore, params: IngestParams) -> pd.DataFrame:
    """In a DVC repository only the landed drops; elsewhere (tests, a plain folder) every one."""
    settings = IngestSettings.from_params(params.model_dump())
    landed_only = find_dvc_root(raw_drops) is not None
    return build_manifest(raw_drops, scan_drops(raw_drops, landed_only), image_store, settings)


def record_drops_version(raw_drops: Path) -> dict[str, Any]:
    """The DVC hash of the drops folder and of each drop, with the repository's .dvcignore."""
    return drops_version(raw_drops, repo_root=find_dvc_root(raw_drops))
