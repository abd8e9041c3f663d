"""Ingest: every file of every drop becomes a manifest row; images are decoded and stored unless
the image store holds a decision for them that the ingest settings leave standing."""

from pathlib import Path

import pandas as pd

from prodcls_pipeline.data.drops import build_manifest, scan_drops
from prodcls_pipeline.data.images import ImageStore, IngestSettings
from prodcls_pipeline.data.versioning import find_dvc_root
from prodcls_pipeline.framework.params import IngestParams


def ingest_drops(raw_drops: Path, image_store: ImageStore, params: IngestParams) -> pd.DataFrame:
    """In a DVC repository only the landed drops; elsewhere (tests, a plain folder) every one."""
    settings = IngestSettings.from_params(params.model_dump())
    landed_only = find_dvc_root(raw_drops) is not None
    return build_manifest(raw_drops, scan_drops(raw_drops, landed_only), image_store, settings)
