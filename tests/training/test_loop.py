import dataclasses

import numpy as np
import pytest
import torch
from helpers import CONFIG

from prodcls_pipeline.training.checkpoints import CheckpointStore
from prodcls_pipeline.training.loop import TrainingConfig
from prodcls_pipeline.training.modes import fit_head


def blobs(seed: int, per_class: int = 30, classes: int = 3, dim: int = 8):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 2, size=(classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    features = centres[labels] + rng.normal(0, 1.5, size=(len(labels), dim))
    return torch.from_numpy(features.astype(np.float32)), labels


def fit(config: TrainingConfig = CONFIG, seed: int = 7, checkpoints=None, fingerprint=""):
    x_train, y_train = blobs(0)
    x_val, y_val = blobs(1, per_class=10)
    return fit_head(x_train, y_train, x_val, y_val, 3, config, seed, checkpoints, fingerprint)


def test_head_learns_separable_classes_and_is_deterministic() -> None:
    first, second = fit(), fit()
    assert first.history["val_accuracy"].iloc[-1] > first.history["val_accuracy"].iloc[0]
    assert first.history["val_accuracy"].max() > 0.9
    assert list(first.history.columns) == [
        "epoch", "train_loss", "val_loss", "val_accuracy", "learning_rate",
    ]  # fmt: skip
    assert torch.equal(first.model.head.weight, second.model.head.weight)
    assert first.history.equals(second.history)


@pytest.mark.parametrize(
    "options",
    [
        {"loss": "focal", "class_balance": "sampler"},
        {"optimizer": "sgd", "schedule": "step", "class_balance": "none", "learning_rate": 0.1},
        {"gradient_clip_norm": 0.5, "label_smoothing": 0.1},
    ],
)
def test_every_option_trains(options) -> None:
    result = fit(dataclasses.replace(CONFIG, **options))
    assert result.history["val_accuracy"].max() > 0.9


def test_history_records_the_warmup_and_schedule() -> None:
    result = fit(dataclasses.replace(CONFIG, early_stopping_patience=100, max_epochs=4))
    assert result.history["learning_rate"].tolist() == pytest.approx(
        [0.005, 0.01, 0.01 * 0.75, 0.01 * 0.25]
    )


def test_early_stopping_restores_the_best_epoch() -> None:
    config = dataclasses.replace(CONFIG, early_stopping_metric="val_loss", learning_rate=0.05)
    result = fit(config)
    history = result.history
    assert len(history) < config.max_epochs
    assert len(history) - result.best_epoch == config.early_stopping_patience
    x_val, y_val = blobs(1, per_class=10)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(result.model(x_val), torch.from_numpy(y_val))
    assert loss.item() == pytest.approx(history["val_loss"].min(), rel=1e-5)


def test_temperature_scaling_divides_the_logits_and_lowers_val_loss() -> None:
    plain = fit(dataclasses.replace(CONFIG, label_smoothing=0.3))
    scaled = fit(dataclasses.replace(CONFIG, label_smoothing=0.3, temperature_scaling=True))
    assert plain.temperature == 1.0
    # Label smoothing makes the model underconfident, so the fitted temperature sharpens.
    assert scaled.temperature < 0.9
    x_val, y_val = blobs(1, per_class=10)
    targets = torch.from_numpy(y_val)
    with torch.no_grad():
        plain_logits, scaled_logits = plain.model(x_val), scaled.model(x_val)
    torch.testing.assert_close(scaled_logits, plain_logits / scaled.temperature)
    assert torch.equal(scaled_logits.argmax(1), plain_logits.argmax(1))
    cross_entropy = torch.nn.functional.cross_entropy
    assert cross_entropy(scaled_logits, targets) < cross_entropy(plain_logits, targets)


def test_gradient_clipping_bounds_the_update() -> None:
    config = dataclasses.replace(
        CONFIG, optimizer="sgd", momentum=0.0, learning_rate=1.0, max_epochs=1, batch_size=90,
        dropout=0.0, warmup_epochs=0, schedule="constant", gradient_clip_norm=1e-3,
    )  # fmt: skip
    torch.manual_seed(7)
    initial = torch.nn.Linear(8, 3)
    trained = fit(config).model.head
    change = torch.cat(
        [(trained.weight - initial.weight).flatten(), trained.bias - initial.bias]
    ).norm()
    assert change.item() == pytest.approx(1e-3, rel=1e-3)


class InterruptingStore(CheckpointStore):
    """Dies right after writing its `survive`-th checkpoint, like a killed run."""

    def __init__(self, root, survive: int) -> None:
        super().__init__(root)
        self.saves_left = survive

    def save(self, state) -> None:
        super().save(state)
        self.saves_left -= 1
        if self.saves_left == 0:
            raise KeyboardInterrupt


def test_resume_after_an_interruption_matches_an_uninterrupted_run(tmp_path) -> None:
    config = dataclasses.replace(CONFIG, early_stopping_patience=100, max_epochs=8)
    uninterrupted = fit(config)
    with pytest.raises(KeyboardInterrupt):
        fit(config, checkpoints=InterruptingStore(tmp_path, survive=3), fingerprint="run-a")
    resumed = fit(config, checkpoints=CheckpointStore(tmp_path), fingerprint="run-a")
    assert resumed.history.equals(uninterrupted.history)
    assert torch.equal(resumed.model.head.weight, uninterrupted.model.head.weight)


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path, caplog) -> None:
    config = dataclasses.replace(CONFIG, early_stopping_patience=100, max_epochs=3)
    fit(config, checkpoints=CheckpointStore(tmp_path), fingerprint="run-a")
    with caplog.at_level("INFO"):
        other = fit(config, checkpoints=CheckpointStore(tmp_path), fingerprint="run-b")
    assert "another run" in caplog.text
    assert len(other.history) == 3
    finished = fit(config, checkpoints=CheckpointStore(tmp_path), fingerprint="run-b")
    assert finished.history.equals(other.history)


def test_config_rejects_unknown_choices() -> None:
    with pytest.raises(ValueError, match="class_balance"):
        dataclasses.replace(CONFIG, class_balance="magic").validate()
