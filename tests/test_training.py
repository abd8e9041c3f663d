import numpy as np
import pytest
import torch

from prodcls_pipeline.backbones import BACKBONES
from prodcls_pipeline.classifier import build_classifier, head_probabilities
from prodcls_pipeline.training import (
    HeadTrainingConfig,
    class_weights,
    make_checkpoint,
    train_head,
)

CONFIG = HeadTrainingConfig(
    batch_size=16,
    max_epochs=60,
    learning_rate=0.01,
    weight_decay=0.0,
    label_smoothing=0.0,
    early_stopping_patience=10,
    early_stopping_metric="val_accuracy",
    class_weighting="balanced",
)


def blobs(seed: int, per_class: int = 30, classes: int = 3, dim: int = 8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    features = centres[labels] + rng.normal(0, 1, size=(len(labels), dim))
    return features.astype(np.float32), labels


def test_head_learns_separable_classes_and_is_deterministic() -> None:
    x_train, y_train = blobs(0)
    x_val, y_val = blobs(0, per_class=10)
    first = train_head(x_train, y_train, x_val, y_val, 3, CONFIG, seed=7)
    second = train_head(x_train, y_train, x_val, y_val, 3, CONFIG, seed=7)
    assert first.history["val_accuracy"].max() > 0.9
    assert torch.equal(first.head.weight, second.head.weight)
    assert first.history.equals(second.history)


def test_early_stopping_restores_the_best_epoch() -> None:
    x_train, y_train = blobs(1)
    x_val, y_val = blobs(1, per_class=10)
    trained = train_head(x_train, y_train, x_val, y_val, 3, CONFIG, seed=0)
    history = trained.history
    assert len(history) < CONFIG.max_epochs
    assert len(history) - trained.best_epoch == CONFIG.early_stopping_patience
    logits = trained.head(torch.from_numpy(x_val))
    restored = (logits.argmax(1).numpy() == y_val).mean()
    assert restored == pytest.approx(history["val_accuracy"].max())


def test_balanced_class_weights_favour_rare_classes() -> None:
    weights = class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
    assert weights[1] == pytest.approx(3 * weights[0])
    assert torch.equal(class_weights(np.array([0, 1]), 2, "none"), torch.ones(2))
    with pytest.raises(ValueError, match="class_weighting"):
        class_weights(np.array([0]), 1, "magic")


def test_checkpoint_rebuilds_a_classifier_consistent_with_its_head() -> None:
    trained_head = torch.nn.Linear(1280, 2)
    preprocessing = BACKBONES["efficientnet_lite0"].preprocessing
    checkpoint = make_checkpoint(
        "efficientnet_lite0", ["a", "b"], ["x", "x"], preprocessing, trained_head
    )
    model = build_classifier(checkpoint)
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = model.backbone(images).numpy()
        logits = model(images)
    expected = torch.softmax(logits, 1).numpy()
    assert np.allclose(head_probabilities(checkpoint, features), expected, atol=1e-5)
