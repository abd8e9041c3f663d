"""Train: embed images with the frozen backbone (cached by sha256), fit the head, track the run."""

import logging
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from PIL import Image

from prodcls_pipeline.augmentation import augmented_views, build_train_transform
from prodcls_pipeline.backbones import create_backbone, eval_transform, preprocessing_for
from prodcls_pipeline.embeddings import (
    CLEAN_VIEW,
    EmbeddingStore,
    augmented_view_names,
    embed_missing,
    image_seed,
)
from prodcls_pipeline.images import ImageStore
from prodcls_pipeline.inference import onnx_encoder
from prodcls_pipeline.tracking import tracking_uri, use_project_tracking
from prodcls_pipeline.training import HeadTrainingConfig, make_checkpoint, train_head

logger = logging.getLogger(__name__)


def embed_images(
    splits: pd.DataFrame,
    image_store: ImageStore,
    embedding_store: EmbeddingStore,
    augmentation_policy: dict[str, Any],
    params: dict[str, Any],
    seed: int,
) -> dict[str, int]:
    """Cache clean embeddings of every split and augmented ones of the training images."""
    backbone_name = params["backbone"]
    model, preprocessing = create_backbone(backbone_name)
    encode = onnx_encoder(model, preprocessing.input_size)
    clean = eval_transform(preprocessing)
    computed_clean = embed_missing(
        encode,
        embedding_store,
        backbone_name,
        [CLEAN_VIEW],
        splits["sha256"].tolist(),
        image_store.open,
        lambda image, _sha: [clean(image)],
        params["embed_batch_size"],
    )
    train_transform = build_train_transform(augmentation_policy, preprocessing)
    views = params["views_per_image"]

    def make_augmented(image: Image.Image, sha256: str) -> list:
        return augmented_views(image, train_transform, views, image_seed(seed, sha256))

    computed_augmented = embed_missing(
        encode,
        embedding_store,
        backbone_name,
        augmented_view_names(augmentation_policy, views),
        _split_sha256s(splits, "train"),
        image_store.open,
        make_augmented,
        params["embed_batch_size"],
    )
    counts = {"clean_computed": computed_clean, "augmented_computed": computed_augmented}
    logger.info("Embeddings computed this run (the rest came from the cache): %s", counts)
    return counts


def fit_classifier(
    splits: pd.DataFrame,
    embedding_store: EmbeddingStore,
    augmentation_policy: dict[str, Any],
    embedding_counts: dict[str, int],
    params: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Fit the head on clean + augmented training embeddings; early-stop on the val split.

    `embedding_counts` is taken only so that Kedro runs this after `embed_images`.
    """
    backbone_name = params["backbone"]
    labels = sorted(splits["label"].unique())
    coarse_of = splits.drop_duplicates("label").set_index("label")["coarse_label"]
    index_of = {label: index for index, label in enumerate(labels)}
    train_rows = splits[splits["split"] == "train"]
    val_rows = splits[splits["split"] == "val"]
    if train_rows.empty or val_rows.empty:
        raise ValueError("Training needs images in both the train and the val split")
    train_views = [
        CLEAN_VIEW,
        *augmented_view_names(augmentation_policy, params["views_per_image"]),
    ]
    train_features = [
        embedding_store.load(backbone_name, view, train_rows["sha256"].tolist())
        for view in train_views
    ]
    trained = train_head(
        train_features=np.concatenate(train_features),
        train_labels=np.concatenate(
            [train_rows["label"].map(index_of).to_numpy()] * len(train_views)
        ),
        val_features=embedding_store.load(backbone_name, CLEAN_VIEW, val_rows["sha256"].tolist()),
        val_labels=val_rows["label"].map(index_of).to_numpy(),
        num_classes=len(labels),
        config=HeadTrainingConfig.from_params(params),
        seed=seed,
    )
    checkpoint = make_checkpoint(
        backbone_name,
        labels,
        [coarse_of[label] for label in labels],
        preprocessing_for(backbone_name),
        trained.head,
    )
    checkpoint["best_epoch"] = trained.best_epoch
    return checkpoint, trained.history


def track_training(
    classifier: dict[str, Any],
    training_history: pd.DataFrame,
    splits: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
) -> dict[str, str]:
    """Log params and per-epoch metrics to a new MLflow run; later stages log into the same run."""
    experiment_id = use_project_tracking(params["experiment_name"])
    with mlflow.start_run(run_name=f"train-{params['backbone']}") as run:
        mlflow.log_params(
            {**{k: v for k, v in params.items() if k != "experiment_name"}, "seed": seed}
        )
        mlflow.log_params(
            {
                f"{split}_images": int(count)
                for split, count in splits["split"].value_counts().items()
            }
            | {"classes": len(classifier["labels"]), "best_epoch": classifier["best_epoch"]}
        )
        for row in training_history.to_dict("records"):
            epoch = int(row.pop("epoch"))
            mlflow.log_metrics(row, step=epoch)
    return {
        "run_id": run.info.run_id,
        "experiment_id": experiment_id,
        "experiment_name": params["experiment_name"],
        "tracking_uri": tracking_uri(),
    }


def _split_sha256s(splits: pd.DataFrame, split: str) -> list[str]:
    return splits.loc[splits["split"] == split, "sha256"].tolist()
