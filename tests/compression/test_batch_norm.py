"""Batch-norm matching after pruning: nothing moves when nothing was pruned, a moved input is
compensated exactly, and the recorded statistics follow pruned channels."""

import copy

import pytest
import torch
from torch import nn

from prodcls_pipeline.compression.batch_norm import (
    INPUT_MEAN,
    INPUT_VAR,
    match_batch_norm,
    record_input_statistics,
)
from prodcls_pipeline.compression.pruning import prune_channels
from prodcls_pipeline.models.backbones import create_backbone
from prodcls_pipeline.models.classifier import ProductClassifier

FEATURES, HIDDEN = 6, 16


def batches(inputs: torch.Tensor, size: int = 16):
    return lambda: ((chunk, torch.zeros(len(chunk))) for chunk in inputs.split(size))


def data() -> torch.Tensor:
    return torch.randn(96, FEATURES, generator=torch.Generator().manual_seed(0)) * 3 + 1


def network() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
                          nn.Linear(HIDDEN, 3))  # fmt: skip
    # Running statistics unlike the data's, as a frozen ImageNet backbone's are to products'.
    model[1].running_mean.uniform_(-1.0, 1.0)
    model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_nothing_pruned_keeps_the_statistics_and_drops_the_records() -> None:
    original = network()
    matched = match_batch_norm(record_input_statistics(original, batches(data())), batches(data()))
    torch.testing.assert_close(matched[1].running_mean, original[1].running_mean)
    torch.testing.assert_close(matched[1].running_var, original[1].running_var)
    assert not hasattr(matched[1], INPUT_MEAN) and not hasattr(matched[1], INPUT_VAR)
    assert not matched.training


def test_a_moved_input_is_compensated_so_the_outputs_stay_the_same() -> None:
    original = network()
    recorded = record_input_statistics(original, batches(data()))
    with torch.no_grad():  # what pruning does to the layer before: scale and shift its output
        recorded[0].weight.mul_(0.5)
        recorded[0].bias.add_(2.0)
    moved_outputs = recorded(data())
    matched = match_batch_norm(recorded, batches(data()))
    with torch.no_grad():
        torch.testing.assert_close(matched(data()), original(data()), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(moved_outputs, original(data()), atol=1e-2)


def test_matching_needs_statistics_recorded_before_pruning() -> None:
    with pytest.raises(ValueError, match="record_input_statistics"):
        match_batch_norm(network(), batches(data()))


def test_recorded_statistics_follow_the_channels_pruning_keeps() -> None:
    torch.manual_seed(0)
    backbone, _ = create_backbone("efficientnet_lite0")
    model = ProductClassifier(backbone, nn.Linear(1280, 4)).eval()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    # One batch: its moments are the population's, so matching the unpruned model is exact.
    recorded = record_input_statistics(model, batches(images, size=4))
    pruned = prune_channels(recorded, 0.5)
    norms = [m for m in pruned.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(getattr(n, INPUT_MEAN).shape == (n.num_features,) for n in norms)
    unpruned = copy.deepcopy(recorded)
    match_batch_norm(unpruned, batches(images, size=4))
    match_batch_norm(pruned, batches(images, size=4))
    with torch.no_grad():
        assert torch.isfinite(pruned(images)).all()
        torch.testing.assert_close(unpruned(images), model(images), atol=1e-3, rtol=1e-3)
