"""The three training modes, each a trainable module fed to the one training loop.

- head: a linear head on cached embeddings of a frozen backbone (seconds per epoch).
- partial: the backbone's tail from cached activations after `partial_block` (CPU-friendly
  fine-tuning: the expensive early blocks run once per image, never per epoch).
- full: the whole network from images with online augmentation (meant for a GPU).
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from prodcls_pipeline.core.digests import package_digest
from prodcls_pipeline.core.schema import TRAIN, VAL
from prodcls_pipeline.data.preprocessing import Preprocessing
from prodcls_pipeline.models.backbone_split import BackboneSuffix, split_backbone
from prodcls_pipeline.models.classifier import ProductClassifier
from prodcls_pipeline.training.adversarial import activation_adversary, image_adversary
from prodcls_pipeline.training.checkpoints import CheckpointStore
from prodcls_pipeline.training.loop import TrainingConfig, TrainingResult, train
from prodcls_pipeline.training.samples import ImageSamples, TensorSamples
from prodcls_pipeline.training.warm_start import WARM_START_PARAMS

MODES = ("head", "partial", "full")
# Params that change no epoch checkpoint (temperature scaling comes after the last epoch):
# a resume may ignore them. The warm-start params enter through the warm-start source instead.
_NOT_FINGERPRINTED = (
    "resume",
    "experiment_name",
    "embed_batch_size",
    "temperature_scaling",
    *WARM_START_PARAMS,
)
# Called on the freshly initialised head before training: a warm start's remapped champion head.
HeadInitialiser = Callable[[nn.Linear], None]


@dataclass(frozen=True)
class LabelledSplits:
    """The class list and each split's images with class indices, in a fixed order."""

    labels: list[str]
    coarse_labels: list[str]
    train: pd.DataFrame
    val: pd.DataFrame

    @classmethod
    def from_splits(cls, splits: pd.DataFrame) -> "LabelledSplits":
        labels = sorted(splits["label"].unique())
        coarse_of = splits.drop_duplicates("label").set_index("label")["coarse_label"]
        index_of = {label: index for index, label in enumerate(labels)}
        rows = splits.sort_values("sha256").assign(target=lambda df: df["label"].map(index_of))
        train_rows, val_rows = rows[rows["split"] == TRAIN], rows[rows["split"] == VAL]
        if train_rows.empty or val_rows.empty:
            raise ValueError("Training needs images in both the train and the val split")
        return cls(labels, [coarse_of[label] for label in labels], train_rows, val_rows)


def run_fingerprint(
    params: dict[str, Any],
    seed: int,
    splits: pd.DataFrame,
    policy: dict,
    weights: str,
    warm_source: dict[str, Any] | None = None,
) -> str:
    """Digest of everything that determines a training run, so a checkpoint resumes only its own:
    the params, seed, splits and augmentation policy, the backbone's `weights` digest, and the
    project's code (all of it: more than train imports, so an edit anywhere merely costs an
    interrupted run its resume, while missing one module would resume a run of other code).

    `warm_source` (see `WarmStart.fingerprint_source`) names the champion a warm run starts
    from, so a warm run never resumes a cold run's checkpoint, nor one warmed from another
    champion; a cold run's digest is what it was before warm starts existed."""
    config = {key: value for key, value in params.items() if key not in _NOT_FINGERPRINTED}
    data = splits[["sha256", "label", "split"]].sort_values("sha256").to_numpy().tolist()
    code = package_digest()
    parts = [config, seed, data, policy, weights, code]
    if warm_source is not None:
        parts.append(warm_source)
    document = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(document.encode()).hexdigest()


def fit_head(
    train_features: torch.Tensor,
    train_labels: np.ndarray,
    val_features: torch.Tensor,
    val_labels: np.ndarray,
    num_classes: int,
    config: TrainingConfig,
    seed: int,
    checkpoints: CheckpointStore | None = None,
    fingerprint: str = "",
    warm_head: HeadInitialiser | None = None,
) -> TrainingResult:
    """A linear head (with dropout) on frozen-backbone embeddings."""
    torch.manual_seed(seed)
    model = ProductClassifier(
        nn.Identity(), nn.Linear(train_features.shape[1], num_classes), config.dropout
    )
    _initialise(model.head, warm_head)
    return train(
        model,
        TensorSamples(train_features, train_labels),
        TensorSamples(val_features, val_labels),
        config,
        seed,
        checkpoints,
        fingerprint,
    )


def fit_partial(
    backbone: nn.Module,
    block: int,
    train_activations: torch.Tensor,
    train_labels: np.ndarray,
    val_activations: torch.Tensor,
    val_labels: np.ndarray,
    num_classes: int,
    config: TrainingConfig,
    seed: int,
    preprocessing: Preprocessing,
    images_of: Callable[[torch.Tensor], torch.Tensor] | None = None,
    checkpoints: CheckpointStore | None = None,
    fingerprint: str = "",
    warm_head: HeadInitialiser | None = None,
) -> TrainingResult:
    """Blocks after `block`, conv_head, bn2 and the head, from cached activations; `backbone`
    is fine-tuned in place. `images_of(indices)` regenerates the training images, needed only
    for adversarial training (the attack perturbs images, not activations)."""
    prefix, suffix = split_backbone(backbone, block)
    torch.manual_seed(seed)
    model = ProductClassifier(suffix, nn.Linear(backbone.num_features, num_classes), config.dropout)
    _initialise(model.head, warm_head)
    adversary = None
    if config.adversarial.enabled:
        if images_of is None:
            raise ValueError("Adversarial partial training needs the training images")
        adversary = activation_adversary(config.adversarial, preprocessing, prefix, images_of)
    return train(
        model,
        TensorSamples(train_activations, train_labels),
        TensorSamples(val_activations, val_labels),
        config,
        seed,
        checkpoints,
        fingerprint,
        adversary,
    )


def fit_full(
    backbone: nn.Module,
    train_images: ImageSamples,
    val_images: ImageSamples,
    num_classes: int,
    config: TrainingConfig,
    seed: int,
    preprocessing: Preprocessing,
    checkpoints: CheckpointStore | None = None,
    fingerprint: str = "",
    num_workers: int = 0,
    warm_head: HeadInitialiser | None = None,
) -> TrainingResult:
    """End-to-end fine-tuning of `backbone` (in place) and the head, from images."""
    backbone.requires_grad_(True)
    torch.manual_seed(seed)
    model = ProductClassifier(
        backbone, nn.Linear(backbone.num_features, num_classes), config.dropout
    )
    _initialise(model.head, warm_head)
    adversary = (
        image_adversary(config.adversarial, preprocessing) if config.adversarial.enabled else None
    )
    return train(
        model,
        train_images,
        val_images,
        config,
        seed,
        checkpoints,
        fingerprint,
        adversary,
        num_workers,
    )


def _initialise(head: nn.Linear, warm_head: HeadInitialiser | None) -> None:
    """After the seeded random init, so a cold run draws exactly what it always drew."""
    if warm_head is not None:
        warm_head(head)


def trainable_in_mode(
    classifier: ProductClassifier, mode: str, partial_block: int
) -> Callable[[str], bool]:
    """Which of the classifier's parameters `mode` trains, by name: the head; the head and the
    backbone after `partial_block`; or everything. Fine-tunes after training (pruning recovery)
    change no more than training did, so a frozen backbone stays the published one."""
    if mode == "full":
        return lambda name: True
    if mode == "head":
        return lambda name: name.startswith("head.")
    if mode != "partial":
        raise ValueError(f"train.mode must be one of {MODES}, not {mode!r}")
    suffix = BackboneSuffix(classifier.backbone, partial_block)
    tuned = {id(parameter) for parameter in suffix.parameters()}
    names = {
        name
        for name, parameter in classifier.named_parameters()
        if id(parameter) in tuned or name.startswith("head.")
    }
    return names.__contains__
