"""Pruning on copies: the sparsity asked for, really smaller layers, the same interface."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from prodcls_pipeline.backbones import create_backbone
from prodcls_pipeline.classifier import ProductClassifier
from prodcls_pipeline.export import export_onnx
from prodcls_pipeline.pruning import (
    prune_channels,
    prune_unstructured,
    weight_sparsity,
    zero_masks,
)

CLASSES = 5
SIZE = 64


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


def test_unstructured_pruning_reaches_the_sparsity_on_a_copy(classifier: ProductClassifier) -> None:
    before = {name: tensor.clone() for name, tensor in classifier.state_dict().items()}
    pruned = prune_unstructured(classifier, 0.5)

    assert weight_sparsity(pruned) == pytest.approx(0.5, abs=0.01)
    assert weight_sparsity(classifier) < 0.01
    assert all(torch.equal(before[k], v) for k, v in classifier.state_dict().items())
    assert parameters(pruned) == parameters(classifier)
    masks = zero_masks(pruned)
    kept = sum(int(mask.sum()) for mask in masks.values())
    assert kept / sum(mask.numel() for mask in masks.values()) == pytest.approx(0.5, abs=0.01)
    assert torch.equal(masks["head.weight"], pruned.head.weight != 0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune_unstructured(classifier, 1.0)


def test_channel_pruning_shrinks_every_block_and_still_exports(
    classifier: ProductClassifier, images: torch.Tensor
) -> None:
    pruned = prune_channels(classifier, 0.5).eval()

    assert parameters(pruned) < 0.8 * parameters(classifier)
    first = pruned.backbone.blocks[1][0]
    assert first.conv_pw.out_channels == first.conv_dw.groups == first.conv_pwl.in_channels == 48
    assert first.bn1.num_features == first.bn2.num_features == 48
    with torch.no_grad():
        assert pruned(images).shape == (2, CLASSES)
    session = ort.InferenceSession(export_onnx(pruned, SIZE), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, pruned(images).numpy(), atol=1e-4)


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
