"""Short fine-tunes after compression: recovery of a pruned model, and knowledge distillation.

One loop serves both. Without a teacher it is plain cross-entropy on the labels (recovery); with
one the student also matches the teacher's softened outputs (Hinton et al., 2015):
    alpha * T² * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels).
`fine_tune_if_better` keeps either only if it raises top-1 on held-out images.
"""

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from prodcls_pipeline.compression.pruning import zero_masks
from prodcls_pipeline.training.optim import build_optimizer

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def fine_tune_student(
    student: nn.Module,
    batches: Batches,
    *,
    trainable: Callable[[str], bool],
    epochs: int,
    learning_rate: float,
    seed: int,
    teacher: nn.Module | None = None,
    temperature: float = 4.0,
    alpha: float = 0.5,
    keep_zeros: bool = False,
    description: str = "fine-tune",
) -> nn.Module:
    """Train the parameters of `student` that `trainable(name)` selects, in place; returns it in
    eval mode. `batches()` yields (images, class indices) afresh for each epoch; `seed` fixes
    the global torch RNG, so a loader that shuffles with it draws the same order every run.

    Only modules whose own parameters all train are put in training mode: a frozen backbone's
    batch-norm statistics do not drift, and parameter-less dropout / drop-path stay off, as a
    short fine-tune of a trained model needs no extra noise. With `keep_zeros`, weights that
    are zero now (unstructured pruning) are zeroed again after every step.
    """
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"Need 0 <= alpha <= 1 and temperature > 0, not {alpha}, {temperature}")
    torch.manual_seed(seed)
    parameters = _select(student, trainable)
    if not parameters:
        raise ValueError("No parameter of the student is trainable: nothing to fine-tune")
    masks = zero_masks(student) if keep_zeros else {}
    # No weight decay: a few epochs from trained weights, not a regularised run from scratch.
    optimizer = build_optimizer(
        [{"params": parameters, "lr": learning_rate}],
        "adamw",
        weight_decay=0.0,
        momentum=0.0,
        nesterov=False,
    )
    if teacher is not None:
        teacher.eval()
    for epoch in range(epochs):
        _train_mode(student, trainable)
        progress = tqdm(batches(), desc=f"{description} {epoch + 1}/{epochs}", unit="batch")
        for images, targets in progress:
            logits = student(images)
            loss = F.cross_entropy(logits, targets)
            if teacher is not None:
                with torch.no_grad():
                    soft_targets = teacher(images)
                loss = (
                    alpha * distillation_loss(logits, soft_targets, temperature)
                    + (1.0 - alpha) * loss
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _apply_masks(student, masks)
            progress.set_postfix(loss=f"{loss.item():.3f}")
    return student.eval()


@dataclass(frozen=True)
class GuardedFineTune:
    """The model a guarded fine-tune keeps, with val top-1 before and after the fine-tune."""

    model: nn.Module
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
    model: nn.Module, val_batches: Batches, **fine_tune: Any
) -> GuardedFineTune:
    """`fine_tune_student` on a copy of `model`, kept only if it raises top-1 on held-out
    `val_batches()`: a few epochs on a sample of training images can as well undo what the
    full training learnt, and then the model as it was is the better one to ship."""
    before = top1_accuracy(model, val_batches)
    tuned = fine_tune_student(copy.deepcopy(model), **fine_tune)
    after = top1_accuracy(tuned, val_batches)
    return GuardedFineTune(tuned if after > before else model, before, after)


@torch.no_grad()
def top1_accuracy(model: nn.Module, batches: Batches) -> float:
    """Share of images whose highest logit is their class, with `model` in eval mode."""
    model.eval()
    correct = total = 0
    for images, targets in batches():
        correct += int((model(images).argmax(dim=1) == targets).sum())
        total += len(targets)
    return correct / total


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T² · KL(teacher ‖ student) on logits softened by T: gradients keep their scale across T."""
    return (
        F.kl_div(
            F.log_softmax(student_logits / temperature, dim=1),
            F.log_softmax(teacher_logits / temperature, dim=1),
            log_target=True,
            reduction="batchmean",
        )
        * temperature**2
    )


def _select(model: nn.Module, trainable: Callable[[str], bool]) -> list[nn.Parameter]:
    selected = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(trainable(name))
        if parameter.requires_grad:
            selected.append(parameter)
    return selected


def _train_mode(model: nn.Module, trainable: Callable[[str], bool]) -> None:
    model.eval()
    for name, module in model.named_modules():
        own = [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
        if own and all(trainable(parameter) for parameter in own):
            module.train()


@torch.no_grad()
def _apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    if not masks:
        return
    parameters = dict(model.named_parameters())
    for name, mask in masks.items():
        parameters[name].mul_(mask)
