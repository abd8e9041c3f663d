import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from prodcls_pipeline.training.losses import (
    FocalLoss,
    balanced_sample_weights,
    build_loss,
    inverse_frequency_weights,
)


def test_focal_loss_is_cross_entropy_at_gamma_zero() -> None:
    logits, targets = (
        torch.randn(16, 4, generator=torch.Generator().manual_seed(0)),
        torch.arange(16) % 4,
    )
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5])
    for smoothing in (0.0, 0.1):
        expected = build_loss("ce", smoothing, 0.0, weight)(logits, targets)
        focal = build_loss("focal", smoothing, 0.0, weight)(logits, targets)
        assert focal.item() == pytest.approx(expected.item(), rel=1e-5)


def test_focal_loss_discounts_easy_samples() -> None:
    easy = torch.tensor([[8.0, 0.0]])
    target = torch.tensor([0])
    ce = build_loss("ce", 0.0, 0.0, None)(easy, target)
    assert FocalLoss(gamma=2.0)(easy, target) < ce / 100
    with pytest.raises(ValueError, match="train.loss"):
        build_loss("hinge", 0.0, 0.0, None)


def test_inverse_frequency_weights_favour_rare_classes() -> None:
    weights = inverse_frequency_weights(np.array([0, 0, 0, 1]), 3)
    assert weights[1] == pytest.approx(3 * weights[0])
    assert weights[2] == 0


def test_balanced_sampler_draws_every_class_equally_often() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    sampler = WeightedRandomSampler(
        balanced_sample_weights(labels), 20_000, generator=torch.Generator().manual_seed(0)
    )
    drawn = np.bincount(labels[list(sampler)])
    assert drawn[1] / drawn.sum() == pytest.approx(0.5, abs=0.02)
