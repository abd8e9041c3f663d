"""Short fine-tunes of a trained classifier on the one training loop (recovery after pruning,
distillation into a smaller student), and the guard that keeps one only if it raises val top-1."""

import copy
from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import Dataset

from prodcls_pipeline.models.classifier import ProductClassifier
from prodcls_pipeline.training.loop import (
    AdversarialConfig,
    TrainingConfig,
    TrainingResult,
    evaluate,
    train,
)
from prodcls_pipeline.training.tasks import TrainingTask

# The parts of a fine-tune's TrainingConfig it never varies. AdamW without weight decay at one
# constant rate: a few epochs from trained weights, not a regularised run from scratch. The last
# epoch is the fine-tune (the guard judges it against the model as it was), on CPU as compress.
_FIXED = {
    "optimizer": "adamw",
    "momentum": 0.0,
    "nesterov": False,
    "weight_decay": 0.0,
    "schedule": "constant",
    "warmup_epochs": 0,
    "step_size": 1,
    "step_gamma": 1.0,
    "dropout": 0.0,
    "loss": "ce",
    "focal_gamma": 0.0,
    "label_smoothing": 0.0,
    "class_balance": "none",
    "gradient_clip_norm": 0.0,
    "early_stopping_metric": "val_accuracy",
    "restore_best": False,
    "temperature_scaling": False,
    "resume": False,
    "device": "cpu",
    "adversarial": AdversarialConfig(False, "fgsm", 0.0, 0, 0.0, 0.0),
}


@dataclass(frozen=True)
class FineTune:
    """How to fine-tune: which parameters train (by name), for how long, how fast, and whether
    the training samples are reshuffled every epoch (a seeded random sample need not be)."""

    trainable: Callable[[str], bool]
    epochs: int
    learning_rate: float
    batch_size: int
    seed: int
    shuffle: bool = True

    def config(self) -> TrainingConfig:
        return TrainingConfig(
            batch_size=self.batch_size,
            max_epochs=self.epochs,
            learning_rate=self.learning_rate,
            backbone_learning_rate=self.learning_rate,
            early_stopping_patience=self.epochs,
            **_FIXED,
        )


def fine_tune(
    model: ProductClassifier,
    task: TrainingTask,
    train_data: Dataset,
    val_data: Dataset,
    settings: FineTune,
    description: str = "fine-tune",
) -> ProductClassifier:
    """Train the parameters of `model` that `settings.trainable(name)` selects for `task`, in
    place; returns it in eval mode."""
    return _train_selected(model, task, train_data, val_data, settings, description).model


def _train_selected(
    model: ProductClassifier,
    task: TrainingTask,
    train_data: Dataset,
    val_data: Dataset,
    settings: FineTune,
    description: str,
) -> TrainingResult:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(settings.trainable(name))
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise ValueError("No parameter of the model is trainable: nothing to fine-tune")
    return train(
        model,
        train_data,
        val_data,
        settings.config(),
        settings.seed,
        task=task,
        shuffle=settings.shuffle,
        description=description,
    )


@dataclass(frozen=True)
class GuardedFineTune:
    """The model a guarded fine-tune keeps, with val top-1 before and after the fine-tune."""

    model: ProductClassifier
    val_top1_before: float
    val_top1_after: float

    @property
    def kept(self) -> bool:
        return self.val_top1_after > self.val_top1_before

    def describe(self, what: str) -> str:
        before, after = f"{self.val_top1_before:.4f}", f"{self.val_top1_after:.4f}"
        if self.kept:
            return f"{what}, kept: val top-1 {before} → {after}"
        return f"{what} discarded: it took val top-1 from {before} to {after}"


def fine_tune_if_better(
    model: ProductClassifier,
    task: TrainingTask,
    train_data: Dataset,
    val_data: Dataset,
    settings: FineTune,
    description: str = "fine-tune",
) -> GuardedFineTune:
    """`fine_tune` on a copy of `model`, kept only if it raises top-1 on held-out `val_data`:
    a few epochs on a sample of training images can as well undo what the full training
    learnt, and then the model as it was is the better one to ship."""
    _, before = evaluate(model, val_data, settings.config())
    tuned = copy.deepcopy(model)
    result = _train_selected(tuned, task, train_data, val_data, settings, description)
    # The loop scored each epoch's model on `val_data`; without restore_best it returns the last
    # one, so its score is the last epoch's (no epoch: the copy is the model as it was).
    history = result.history["val_accuracy"]
    after = float(history.iloc[-1]) if len(history) else before
    return GuardedFineTune(result.model if after > before else model, before, after)
