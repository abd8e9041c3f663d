import torch
from torch import nn

from prodcls_pipeline.evaluation.attacks import fgsm, pgd

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    pixels = torch.rand(8, 3, 16, 16, generator=generator)
    return (pixels - 0.5) / 0.5, torch.randint(0, 3, (8,), generator=generator)


def pixels_of(images: torch.Tensor) -> torch.Tensor:
    return images * 0.5 + 0.5


def test_attacks_stay_within_epsilon_and_valid_pixels() -> None:
    model, (images, labels) = toy_model(), batch()
    for adversarial in (
        fgsm(model, images, labels, 4 / 255, MEAN, STD),
        pgd(model, images, labels, 4 / 255, 1 / 255, 5, MEAN, STD, random_start=True),
    ):
        change = (pixels_of(adversarial) - pixels_of(images)).abs().max()
        assert 0 < change <= 4 / 255 + 1e-6
        assert pixels_of(adversarial).min() >= -1e-6 and pixels_of(adversarial).max() <= 1 + 1e-6


def test_attacks_raise_the_loss_and_leave_the_model_alone() -> None:
    model, (images, labels) = toy_model(), batch()
    model.train()
    loss = nn.CrossEntropyLoss()
    with torch.no_grad():
        clean_loss = loss(model(images), labels)
    adversarial = pgd(model, images, labels, 8 / 255, 2 / 255, 10, MEAN, STD)
    with torch.no_grad():
        assert loss(model(adversarial), labels) > clean_loss
    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
