"""Ingest: every file of every drop becomes a manifest row; new images are decoded and stored."""

from pathlib import Path
from typing import Any

import pandas as pd

from prodcls_pipeline.data.drops import build_manifest, scan_drops
from prodcls_pipeline.data.images import ImageStore


def ingest_drops(raw_drops: Path, image_store: ImageStore, params: dict[str, Any]) -> pd.DataFrame:
    return build_manifest(
        raw_drops,
        scan_drops(raw_drops),
        image_store,
        max_side=params["max_side"],
        max_pixels=params["max_source_pixels"],
        max_source_bytes=params["max_source_bytes"],
        quality=params["normalised_quality"],
    )
