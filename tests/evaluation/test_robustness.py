import hashlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from prodcls_pipeline.data.preprocessing import Preprocessing
from prodcls_pipeline.evaluation.robustness import (
    BATCH_SIZE,
    AttackBudget,
    corruptions,
    robustness_scores,
    to_normalised,
    to_pixels,
)
from prodcls_pipeline.runtime.batching import labelled_batches

PREPROCESSING = Preprocessing(input_size=16, resize_size=16, mean=(0.5,) * 3, std=(0.5,) * 3)
SETTINGS = {"blur_radius": 1.0, "noise_std": 0.1, "brightness": 0.6, "jpeg_quality": 20}
BUDGET = AttackBudget(epsilon=12 / 255, pgd_steps=3, pgd_alpha=6 / 255)


class TwoColourStore:
    """Noisy reddish (class 0) and bluish (class 1) images keyed by sha256, like `ImageStore`."""

    def __init__(self, per_class: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.images, self.labels = {}, {}
        for index in range(2 * per_class):
            label = index % 2
            base = np.array([140, 120, 120] if label == 0 else [120, 120, 140])
            pixels = np.clip(base + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            sha256 = hashlib.sha256(image.tobytes()).hexdigest()
            self.images[sha256], self.labels[sha256] = image, label

    def open(self, sha256: str) -> Image.Image:
        return self.images[sha256].copy()

    def batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        sha256s = list(self.images)
        labels = [self.labels[sha256] for sha256 in sha256s]
        return list(labelled_batches(self, sha256s, labels, PREPROCESSING, BATCH_SIZE))


def trained_toy_model(store: TwoColourStore) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    images = torch.from_numpy(np.concatenate([batch for batch, _ in store.batches()]))
    labels = torch.from_numpy(np.concatenate([label for _, label in store.batches()]))
    for _ in range(60):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def store() -> TwoColourStore:
    return TwoColourStore(per_class=20, seed=0)


def test_labelled_batches_keep_each_image_with_its_label(store: TwoColourStore) -> None:
    batches = store.batches()
    assert sum(len(images) for images, _ in batches) == 40
    assert all(len(images) == len(labels) for images, labels in batches)
    assert batches[0][1][:4].tolist() == [0, 1, 0, 1]
    assert batches[0][0].shape[1:] == (3, 16, 16)


def test_attacks_cost_accuracy_on_a_trained_model(store: TwoColourStore) -> None:
    model = trained_toy_model(store)
    scores = robustness_scores(
        model, store.batches(), PREPROCESSING, BUDGET, corruptions(SETTINGS, seed=0)
    )
    assert scores["robustness_images"] == 40
    assert scores["clean_top1_robustness_sample"] >= 0.9
    assert scores["fgsm_top1"] < scores["clean_top1_robustness_sample"]
    assert scores["pgd_top1"] < scores["clean_top1_robustness_sample"]
    names = ["blur", "noise", "brightness", "jpeg"]
    for name in names:
        assert 0 <= scores[f"corruption_top1_{name}"] <= 1
    mean = np.mean([scores[f"corruption_top1_{name}"] for name in names])
    assert scores["corruption_top1_mean"] == pytest.approx(mean, abs=1e-4)


def test_scores_are_reproducible(store: TwoColourStore) -> None:
    model = trained_toy_model(store)
    first, second = (
        robustness_scores(model, store.batches(), PREPROCESSING, BUDGET, corruptions(SETTINGS, 7))
        for _ in range(2)
    )
    assert first == second


def test_an_empty_sample_reports_its_size_only() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    scores = robustness_scores(model, [], PREPROCESSING, BUDGET, corruptions(SETTINGS, 0))
    assert scores == {"robustness_images": 0}


def test_corruptions_change_images_deterministically_within_valid_pixels() -> None:
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first, second = corruptions(SETTINGS, seed=3), corruptions(SETTINGS, seed=3)
    assert set(first) == {"blur", "noise", "brightness", "jpeg"}
    for name, corrupt in first.items():
        corrupted = corrupt(pixels)
        assert corrupted.shape == pixels.shape, name
        assert corrupted.min() >= 0 and corrupted.max() <= 1, name
        assert (corrupted - pixels).abs().mean() > 0.01, name
        assert torch.equal(corrupted, second[name](pixels)), name


def test_brightness_darkens_and_noise_depends_on_the_seed() -> None:
    pixels = torch.full((1, 3, 8, 8), 0.5)
    assert torch.allclose(corruptions(SETTINGS, 0)["brightness"](pixels), pixels * 0.6)
    noisy = [corruptions(SETTINGS, seed)["noise"](pixels) for seed in (0, 1)]
    assert not torch.equal(noisy[0], noisy[1])


def test_pixel_round_trip() -> None:
    pixels = torch.rand(2, 3, 4, 4)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    assert torch.allclose(to_pixels(to_normalised(pixels, mean, std), mean, std), pixels, atol=1e-6)
