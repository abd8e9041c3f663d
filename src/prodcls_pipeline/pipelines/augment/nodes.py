"""Augment nodes: validate the augmentation policy and draw a preview of what it does."""

from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.figure import Figure

from prodcls_pipeline.data import augmentation
from prodcls_pipeline.models.backbones import preprocessing_for

if TYPE_CHECKING:
    from prodcls_pipeline.data.images import ImageStore


def make_augmentation_policy(params: dict[str, Any], seed: int) -> dict[str, Any]:
    return augmentation.augmentation_policy(params, seed)


def make_augmentation_preview(
    splits: pd.DataFrame,
    image_store: "ImageStore",
    policy: dict[str, Any],
    params: dict[str, Any],
    backbone: str,
    weights_file: str | None,
    seed: int,
) -> Figure:
    chosen = augmentation.select_preview_images(splits, params["preview_images"])
    return augmentation.preview_figure(
        [image_store.open(sha256) for sha256 in chosen["sha256"]],
        policy,
        preprocessing_for(backbone, weights_file),
        views=params["preview_views"],
        seed=seed,
        labels=list(chosen["label"]),
    )
