"""Splitting a timm EfficientNet/MobileNet at a block, for `partial` fine-tuning.

The frozen prefix (stem and blocks 0..N) runs once per image and view; its activations are
cached by sha256 like embeddings. Only the suffix (blocks N+1.., conv_head, bn2, pooling) is
trained, from those activations. Both parts share the backbone's own modules, so after training
`backbone.state_dict()` is the fine-tuned backbone that `build_classifier` reloads.
"""

import torch
from torch import nn


class BackbonePrefix(nn.Module):
    """Image → activations after block `block` (frozen)."""

    def __init__(self, backbone: nn.Module, block: int) -> None:
        super().__init__()
        _check_splittable(backbone, block)
        self.conv_stem = backbone.conv_stem
        self.bn1 = backbone.bn1
        self.blocks = backbone.blocks[: block + 1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.bn1(self.conv_stem(images)))


class BackboneSuffix(nn.Module):
    """Activations after block `block` → pooled features (the trainable part)."""

    def __init__(self, backbone: nn.Module, block: int) -> None:
        super().__init__()
        _check_splittable(backbone, block)
        self.blocks = backbone.blocks[block + 1 :]
        self.conv_head = backbone.conv_head
        self.bn2 = backbone.bn2
        self.global_pool = backbone.global_pool

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        return self.global_pool(self.bn2(self.conv_head(self.blocks(activations))))


def split_backbone(backbone: nn.Module, block: int) -> tuple[BackbonePrefix, BackboneSuffix]:
    """The frozen prefix (eval mode, no gradients) and the trainable suffix of `backbone`."""
    prefix, suffix = BackbonePrefix(backbone, block), BackboneSuffix(backbone, block)
    prefix.eval().requires_grad_(False)
    return prefix, suffix


def activation_key(backbone: str, block: int) -> str:
    """The cache key of a backbone's activations after `block` (beside its embeddings)."""
    return f"{backbone}.blocks{block}"


def _check_splittable(backbone: nn.Module, block: int) -> None:
    parts = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool")
    if not all(hasattr(backbone, part) for part in parts):
        raise ValueError(
            f"train.mode 'partial' needs a timm EfficientNet/MobileNet-style backbone with "
            f"{', '.join(parts)}; {type(backbone).__name__} has not. Use 'head' or 'full'."
        )
    if not 0 <= block < len(backbone.blocks) - 1:
        raise ValueError(
            f"train.partial_block must be in 0..{len(backbone.blocks) - 2} so that at least one "
            f"block stays trainable, not {block}"
        )
