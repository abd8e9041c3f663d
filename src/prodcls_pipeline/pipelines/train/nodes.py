"""Train: cache frozen-backbone outputs by sha256, train in the configured mode, track the run."""

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from PIL import Image

from prodcls_pipeline.core.tracking import tracking_uri, use_project_tracking
from prodcls_pipeline.data.augmentation import augmented_views, build_train_transform
from prodcls_pipeline.data.images import ImageStore
from prodcls_pipeline.data.preprocessing import Preprocessing, eval_transform
from prodcls_pipeline.framework.params import TrainParams
from prodcls_pipeline.models.backbone_split import activation_key, split_backbone
from prodcls_pipeline.models.backbones import (
    backbone_identity,
    create_backbone,
    preprocessing_for,
    weights_digest,
)
from prodcls_pipeline.models.classifier import make_checkpoint
from prodcls_pipeline.runtime.sessions import available_cores, onnx_encoder
from prodcls_pipeline.training.checkpoints import CheckpointStore
from prodcls_pipeline.training.embedding_cache import (
    CLEAN_VIEW,
    EmbeddingStore,
    augmented_view_names,
    embed_missing,
    image_seed,
)
from prodcls_pipeline.training.loop import TrainingConfig, TrainingResult, resolve_device
from prodcls_pipeline.training.modes import (
    MODES,
    LabelledSplits,
    fit_full,
    fit_head,
    fit_partial,
    run_fingerprint,
)
from prodcls_pipeline.training.replay import TRAINED_ON, Replay, replay_rows, trained_on
from prodcls_pipeline.training.samples import ImageSamples, ViewImages
from prodcls_pipeline.training.warm_start import (
    WarmStart,
    WarmTarget,
    head_initialiser,
    load_backbone,
    log_checkpoint,
    record_tags,
    resolve_warm_start,
    warm_config,
)

logger = logging.getLogger(__name__)


def start_training(train_params: TrainParams, registered_model_name: str) -> WarmStart:
    """Where this run starts: the champion's weights (`train.warm_start: champion`, when it has
    compatible ones) or from scratch."""
    params = train_params.model_dump()
    backbone, preprocessing = create_backbone(params["backbone"], params["weights_file"])
    return resolve_warm_start(
        params["warm_start"],
        registered_model_name,
        WarmTarget(
            backbone=params["backbone"],
            weights_sha256=weights_digest(params["backbone"], params["weights_file"]),
            mode=_mode(params),
            partial_block=params["partial_block"],
            preprocessing=preprocessing.to_dict(),
            network=backbone,
        ),
    )


def select_training_images(
    splits: pd.DataFrame, warm_start: WarmStart, train_params: TrainParams, seed: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The training rows this run trains on, with their class index, and how many are new and
    replayed: a warm run's new images and a replayed sample (see `training.replay`), a cold
    run's whole training split."""
    train = LabelledSplits.from_splits(splits).train
    if not warm_start.active:
        return train, Replay.whole(len(train)).as_dict()
    rows, replay = replay_rows(
        train,
        warm_start.checkpoint.get(TRAINED_ON),
        train_params.model_dump()["warm_start_replay"],
        seed,
    )
    return rows, replay.as_dict()


def embed_images(
    splits: pd.DataFrame,
    training_rows: pd.DataFrame,
    image_store: ImageStore,
    embedding_store: EmbeddingStore,
    augmentation_policy: dict[str, Any],
    train_params: TrainParams,
    seed: int,
) -> dict[str, int]:
    """Cache the frozen backbone's outputs (embeddings in `head` mode, activations after
    `partial_block` in `partial` mode): clean for every split, augmented for the training rows
    this run trains on."""
    params = train_params.model_dump()
    mode = _mode(params)
    if mode == "full":
        logger.info("train.mode is 'full': images are augmented online, nothing is cached")
        return {"clean_computed": 0, "augmented_computed": 0}
    backbone, preprocessing = create_backbone(params["backbone"], params["weights_file"])
    key = _cache_key(params)
    if mode == "partial":
        encoder, _ = split_backbone(backbone, params["partial_block"])
        dtype = np.float16
    else:
        encoder, dtype = backbone, np.float32
    encode = onnx_encoder(encoder, preprocessing.input_size)
    clean = eval_transform(preprocessing)
    computed_clean = embed_missing(
        encode,
        embedding_store,
        key,
        [CLEAN_VIEW],
        splits["sha256"].tolist(),
        image_store.open,
        lambda image, _sha: [clean(image)],
        params["embed_batch_size"],
        dtype,
    )
    computed_augmented = embed_missing(
        encode,
        embedding_store,
        key,
        augmented_view_names(augmentation_policy, params["views_per_image"]),
        training_rows["sha256"].tolist(),
        image_store.open,
        _augmenter(augmentation_policy, params, seed),
        params["embed_batch_size"],
        dtype,
    )
    counts = {"clean_computed": computed_clean, "augmented_computed": computed_augmented}
    logger.info("Cached %s outputs computed this run (the rest were reused): %s", key, counts)
    return counts


def fit_classifier(
    splits: pd.DataFrame,
    training_rows: pd.DataFrame,
    replay_counts: dict[str, int],
    image_store: ImageStore,
    embedding_store: EmbeddingStore,
    augmentation_policy: dict[str, Any],
    embedding_counts: dict[str, int],
    training_checkpoints: CheckpointStore,
    warm_start: WarmStart,
    train_params: TrainParams,
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train in `train.mode` on `training_rows` (from the champion's weights with
    `train.warm_start: champion`), select the epoch on the val split, resume an interrupted run.

    `embedding_counts` is taken only so that Kedro runs this after `embed_images`.
    """
    params = train_params.model_dump()
    mode = _mode(params)
    data = LabelledSplits.from_splits(splits)
    weights = weights_digest(params["backbone"], params["weights_file"])
    backbone, preprocessing = create_backbone(params["backbone"], params["weights_file"])
    config = warm_config(TrainingConfig.from_params(params), warm_start, params)
    split_train = data.train
    data = dataclasses.replace(data, train=training_rows)
    fingerprint = run_fingerprint(
        params, seed, splits, augmentation_policy, weights, warm_start.fingerprint_source(params)
    )
    load_backbone(backbone, warm_start)
    key = _cache_key(params)
    train_views = [
        CLEAN_VIEW,
        *augmented_view_names(augmentation_policy, params["views_per_image"]),
    ]
    train_sha256s, val_sha256s = data.train["sha256"].tolist(), data.val["sha256"].tolist()
    train_targets = np.tile(data.train["target"].to_numpy(), len(train_views))
    val_targets = data.val["target"].to_numpy()
    common = {
        "config": config,
        "seed": seed,
        "checkpoints": training_checkpoints,
        "fingerprint": fingerprint,
        "warm_head": head_initialiser(warm_start, data.labels),
    }
    if mode == "head":
        result = fit_head(
            torch.from_numpy(embedding_store.load_views(key, train_views, train_sha256s)),
            train_targets,
            torch.from_numpy(embedding_store.load(key, CLEAN_VIEW, val_sha256s)),
            val_targets,
            len(data.labels),
            **common,
        )
    elif mode == "partial":
        result = fit_partial(
            backbone,
            params["partial_block"],
            torch.from_numpy(embedding_store.load_views(key, train_views, train_sha256s)),
            train_targets,
            torch.from_numpy(embedding_store.load(key, CLEAN_VIEW, val_sha256s)),
            val_targets,
            len(data.labels),
            preprocessing=preprocessing,
            images_of=ViewImages(
                train_sha256s,
                image_store.open,
                eval_transform(preprocessing),
                _augmenter(augmentation_policy, params, seed),
            ),
            **common,
        )
    else:
        result = fit_full(
            backbone,
            ImageSamples(
                train_sha256s,
                data.train["target"].to_numpy(),
                image_store.open,
                build_train_transform(augmentation_policy, preprocessing),
            ),
            ImageSamples(val_sha256s, val_targets, image_store.open, eval_transform(preprocessing)),
            len(data.labels),
            preprocessing=preprocessing,
            num_workers=available_cores() if resolve_device(params["device"]).type == "cuda" else 0,
            **common,
        )
    checkpoint = _checkpoint(
        params, data, preprocessing, backbone, mode, result, weights, warm_start
    )
    checkpoint.update({TRAINED_ON: trained_on(split_train), "replay": replay_counts})
    return checkpoint, result.history


def track_training(
    classifier: dict[str, Any],
    training_history: pd.DataFrame,
    splits: pd.DataFrame,
    train_params: TrainParams,
    seed: int,
) -> dict[str, str]:
    """Log params, per-epoch metrics, the warm start and the classifier checkpoint (what a later
    warm start fetches) to a new MLflow run; later stages log into the same run."""
    params = train_params.model_dump()
    experiment_id = use_project_tracking(params["experiment_name"])
    with mlflow.start_run(run_name=f"train-{params['mode']}-{params['backbone']}") as run:
        mlflow.log_params({**_flat(params, exclude=("experiment_name",)), "seed": seed})
        mlflow.set_tags(record_tags(classifier["warm_start"]))
        log_checkpoint(classifier)
        mlflow.log_params(
            {
                f"{split}_images": int(count)
                for split, count in splits["split"].value_counts().items()
            }
            | {
                "classes": len(classifier["labels"]),
                "best_epoch": classifier["best_epoch"],
                "temperature": classifier["temperature"],
            }
            | {f"replay.{key}": value for key, value in classifier["replay"].items()}
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


def _cache_key(params: dict[str, Any]) -> str:
    """Embeddings are keyed by backbone and weights; partial-mode activations also by block."""
    identity = backbone_identity(params["backbone"], params["weights_file"])
    if params["mode"] == "partial":
        return activation_key(identity, params["partial_block"])
    return identity


def _mode(params: dict[str, Any]) -> str:
    if params["mode"] not in MODES:
        raise ValueError(f"train.mode must be one of {MODES}, not {params['mode']!r}")
    return params["mode"]


def _augmenter(
    policy: dict[str, Any], params: dict[str, Any], seed: int
) -> Callable[[Image.Image, str], list[torch.Tensor]]:
    """`(image, sha256) -> views_per_image augmented tensors`, the same for the same image."""
    transform = build_train_transform(
        policy, preprocessing_for(params["backbone"], params["weights_file"])
    )
    views = params["views_per_image"]

    def make_augmented(image: Image.Image, sha256: str) -> list[torch.Tensor]:
        return augmented_views(image, transform, views, image_seed(seed, sha256))

    return make_augmented


def _checkpoint(
    params: dict[str, Any],
    data: LabelledSplits,
    preprocessing: Preprocessing,
    backbone: torch.nn.Module,
    mode: str,
    result: TrainingResult,
    weights: str,
    warm: WarmStart,
) -> dict[str, Any]:
    """Head-only checkpoints reuse the packaged backbone; fine-tuned ones carry theirs. The
    weights digest lets a later warm start check it starts from the same backbone weights."""
    checkpoint = make_checkpoint(
        params["backbone"],
        params["weights_file"],
        data.labels,
        data.coarse_labels,
        preprocessing,
        result.model.head,
        None if mode == "head" else backbone.state_dict(),
    )
    checkpoint.update(
        mode=mode,
        best_epoch=result.best_epoch,
        temperature=result.temperature,
        weights_sha256=weights,
        warm_start=warm.record(),
    )
    if mode == "partial":
        checkpoint["partial_block"] = params["partial_block"]
    return checkpoint


def _flat(params: dict[str, Any], exclude: tuple[str, ...], prefix: str = "") -> dict[str, Any]:
    """Nested sections become dotted keys (`adversarial.epsilon`): MLflow params are flat."""
    flat = {}
    for key, value in params.items():
        if key in exclude:
            continue
        if isinstance(value, dict):
            flat |= _flat(value, exclude, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
