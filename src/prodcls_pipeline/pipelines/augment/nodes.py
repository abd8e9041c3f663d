"""Augment nodes: validate the augmentation policy and draw a preview of what it does."""

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from prodcls_pipeline.data import augmentation
from prodcls_pipeline.data.images import ImageStore
from prodcls_pipeline.framework.params import AugmentParams
from prodcls_pipeline.models.backbones import preprocessing_for


def make_augmentation_policy(params: AugmentParams, seed: int) -> dict[str, Any]:
    return augmentation.augmentation_policy(params.model_dump(), seed)


def make_augmentation_preview(
    splits: pd.DataFrame,
    image_store: ImageStore,
    policy: dict[str, Any],
    params: AugmentParams,
    backbone: str,
    weights_file: str | None,
    seed: int,
) -> Figure:
    chosen = augmentation.select_preview_images(splits, params.preview_images)
    return augmentation.preview_figure(
        [image_store.open(sha256) for sha256 in chosen["sha256"]],
        policy,
        preprocessing_for(backbone, weights_file),
        views=params.preview_views,
        seed=seed,
        labels=list(chosen["label"]),
    )
