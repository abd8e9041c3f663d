"""Training a linear classification head on cached backbone embeddings, with early stopping."""

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from prodcls_pipeline.backbones import Preprocessing


@dataclass(frozen=True)
class HeadTrainingConfig:
    batch_size: int
    max_epochs: int
    learning_rate: float
    weight_decay: float
    label_smoothing: float
    early_stopping_patience: int
    early_stopping_metric: str
    class_weighting: str

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "HeadTrainingConfig":
        return cls(**{name: params[name] for name in cls.__dataclass_fields__})


@dataclass
class TrainedHead:
    head: nn.Linear
    history: pd.DataFrame
    best_epoch: int


def class_weights(labels: np.ndarray, num_classes: int, scheme: str) -> torch.Tensor:
    """`balanced`: n_samples / (n_classes * n_c), as in scikit-learn; `none`: all ones."""
    if scheme == "none":
        return torch.ones(num_classes)
    if scheme != "balanced":
        raise ValueError(f"class_weighting must be 'balanced' or 'none', not {scheme!r}")
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def train_head(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    num_classes: int,
    config: HeadTrainingConfig,
    seed: int,
) -> TrainedHead:
    """Fit a linear head with AdamW; keep the epoch that is best on the validation split."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = torch.from_numpy(train_features), torch.from_numpy(train_labels).long()
    x_val, y_val = torch.from_numpy(val_features), torch.from_numpy(val_labels).long()
    head = nn.Linear(x_train.shape[1], num_classes)
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    weights = class_weights(train_labels, num_classes, config.class_weighting)
    train_loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    val_loss_fn = nn.CrossEntropyLoss()
    rows, best_score, best_epoch, best_state = [], -np.inf, 0, copy.deepcopy(head.state_dict())
    progress = tqdm(range(1, config.max_epochs + 1), desc="train head", unit="epoch")
    for epoch in progress:
        head.train()
        epoch_loss = 0.0
        for batch in torch.randperm(len(x_train), generator=generator).split(config.batch_size):
            optimizer.zero_grad()
            loss = train_loss_fn(head(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item() * len(batch)
        head.eval()
        with torch.no_grad():
            val_logits = head(x_val)
            row = {
                "epoch": epoch,
                "train_loss": epoch_loss / len(x_train),
                "val_loss": val_loss_fn(val_logits, y_val).item(),
                "val_accuracy": (val_logits.argmax(1) == y_val).float().mean().item(),
            }
        rows.append(row)
        score = _score(row, config.early_stopping_metric)
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(head.state_dict())
        progress.set_postfix(val_accuracy=f"{row['val_accuracy']:.3f}", best_epoch=best_epoch)
        if epoch - best_epoch >= config.early_stopping_patience:
            break
    head.load_state_dict(best_state)
    return TrainedHead(head=head.eval(), history=pd.DataFrame(rows), best_epoch=best_epoch)


def make_checkpoint(
    backbone: str,
    labels: list[str],
    coarse_labels: list[str],
    preprocessing: Preprocessing,
    head: nn.Linear,
) -> dict[str, Any]:
    """The classifier checkpoint that `classifier.build_classifier` reads back."""
    return {
        "backbone": backbone,
        "labels": list(labels),
        "coarse_labels": list(coarse_labels),
        "preprocessing": preprocessing.to_dict(),
        "head": {name: tensor.detach().clone() for name, tensor in head.state_dict().items()},
    }


def _score(row: dict[str, float], metric: str) -> float:
    """Higher is better: losses are negated."""
    if metric not in row or metric == "epoch":
        raise ValueError(f"early_stopping_metric {metric!r} is not one of val_accuracy, val_loss")
    return -row[metric] if metric.endswith("loss") else row[metric]
