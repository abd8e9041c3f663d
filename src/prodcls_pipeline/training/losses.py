"""Classification losses and class weights for imbalanced training sets."""

import numpy as np
import torch
from torch import nn
from torch.nn import functional

LOSSES = ("ce", "focal")


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): cross-entropy scaled by (1 - p_true)^gamma, so that
    well-classified samples count less. At gamma 0 it is cross-entropy, weights and label
    smoothing included."""

    def __init__(
        self, gamma: float, weight: torch.Tensor | None = None, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_sample = functional.cross_entropy(
            logits,
            targets,
            weight=self.weight,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        true_class_probability = logits.float().softmax(1).gather(1, targets[:, None])[:, 0]
        modulated = (1 - true_class_probability) ** self.gamma * per_sample
        if self.weight is None:
            return modulated.mean()
        # The per-sample losses are already weighted; normalise as cross_entropy's mean does.
        return modulated.sum() / self.weight[targets].sum()


def build_loss(
    name: str, label_smoothing: float, focal_gamma: float, weight: torch.Tensor | None
) -> nn.Module:
    """`ce` or `focal`; `weight` holds one weight per class, or None for uniform."""
    if name == "ce":
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(focal_gamma, weight, label_smoothing)
    raise ValueError(f"train.loss must be one of {LOSSES}, not {name!r}")


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """n_samples / (n_classes * n_c), as scikit-learn's `balanced`; absent classes weigh 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def balanced_sample_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-sample weights 1 / n_class: every class is drawn equally often by a weighted sampler."""
    counts = np.bincount(labels)
    return torch.tensor(1.0 / counts[labels], dtype=torch.float64)
