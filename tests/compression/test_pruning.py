"""Pruning on copies: the sparsity asked for, really smaller layers, the same interface."""

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from prodcls_pipeline.compression.pruning import (
    prune_channels,
    prune_unstructured,
    weight_sparsity,
    zero_masks,
)
from prodcls_pipeline.models.backbones import create_backbone
from prodcls_pipeline.models.classifier import ProductClassifier
from prodcls_pipeline.models.onnx_export import export_onnx

CLASSES = 5
SIZE = 64
# Expansion channels of Lite0's inverted-residual blocks, stage by stage.
LITE0_EXPANSIONS = [96, 144, 144, 240, 240, 480, 480, 480, 672, 672, 672, 1152, 1152, 1152, 1152]


@pytest.fixture(scope="module")
def classifier() -> ProductClassifier:
    torch.manual_seed(0)
    backbone, _ = create_backbone("efficientnet_lite0")
    return ProductClassifier(backbone, nn.Linear(1280, CLASSES)).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def expansions(model: nn.Module) -> list[int]:
    return [m.conv_pw.out_channels for m in model.modules() if hasattr(m, "conv_pwl")]


def test_unstructured_pruning_zeroes_the_globally_smallest_weights_of_a_copy(
    classifier: ProductClassifier,
) -> None:
    before = copy.deepcopy(classifier.state_dict())
    pruned = prune_unstructured(classifier, 0.5)

    assert weight_sparsity(pruned) == pytest.approx(0.5, abs=0.01)
    assert weight_sparsity(classifier) < 0.01
    assert all(torch.equal(before[k], v) for k, v in classifier.state_dict().items())
    assert parameters(pruned) == parameters(classifier)
    masks = zero_masks(pruned)
    assert torch.equal(masks["head.weight"], pruned.head.weight != 0)
    # One threshold for the whole network, not one per layer.
    magnitudes = torch.cat([before[name].abs().flatten() for name in masks])
    kept = torch.cat([mask.flatten() for mask in masks.values()])
    assert magnitudes[~kept].max() <= magnitudes[kept].min()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune_unstructured(classifier, 1.0)


def test_channel_pruning_cuts_the_weakest_channels_and_still_exports(
    classifier: ProductClassifier, images: torch.Tensor
) -> None:
    # Silence the odd channels of every block: pruning half must remove exactly those, and
    # then the outputs cannot change. A frozen backbone must stay frozen.
    silenced = copy.deepcopy(classifier).eval()
    silenced.backbone.requires_grad_(False)
    for block in silenced.modules():
        if hasattr(block, "conv_pwl"):
            block.bn2.weight.data[1::2] = 0.0
            block.bn2.bias.data[1::2] = 0.0
    pruned = prune_channels(silenced, 0.5).eval()

    assert expansions(silenced) == LITE0_EXPANSIONS
    assert expansions(pruned) == [channels // 2 for channels in LITE0_EXPANSIONS]
    assert parameters(pruned) < 0.6 * parameters(silenced)
    assert not any(parameter.requires_grad for parameter in pruned.backbone.parameters())
    block = pruned.backbone.blocks[1][0]
    assert block.conv_dw.groups == block.conv_dw.in_channels == block.conv_pwl.in_channels == 48
    assert block.bn1.num_features == block.bn2.running_var.numel() == 48
    with torch.no_grad():
        expected = silenced(images)
        torch.testing.assert_close(pruned(images), expected, rtol=1e-4, atol=1e-4)
    session = ort.InferenceSession(export_onnx(pruned, SIZE), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_channel_counts_round_to_multiples_of_8(classifier: ProductClassifier) -> None:
    pruned = prune_channels(classifier, 0.25)
    # 0.75 × 144 = 108 → 112; 0.75 × 240 = 180 → 176 (half to even).
    assert expansions(pruned)[:5] == [72, 112, 112, 176, 176]
    assert all(channels % 8 == 0 for channels in expansions(prune_channels(classifier, 0.99)))
    assert expansions(classifier) == LITE0_EXPANSIONS


def test_channel_fraction_zero_changes_nothing(
    classifier: ProductClassifier, images: torch.Tensor
) -> None:
    same = prune_channels(classifier, 0.0).eval()
    assert parameters(same) == parameters(classifier)
    with torch.no_grad():
        torch.testing.assert_close(same(images), classifier(images))


def test_channel_pruning_refuses_a_model_without_inverted_residual_blocks() -> None:
    plain = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )
    with pytest.raises(ValueError, match="inverted-residual blocks .* EfficientNet-Lite"):
        prune_channels(plain, 0.25)
