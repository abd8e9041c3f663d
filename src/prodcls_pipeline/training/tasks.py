"""What the one training loop optimises, as timm's training tasks: the loss of a batch, which
modules run in training mode, and what must hold again after every optimizer step. The loop
(`training.loop.train`) owns the rest: data order, optimizer, schedule, validation, checkpoints.

- classification: the configured loss on the labels, the whole network in training mode.
- recovery: cross-entropy on the labels for a trained model after compression; a step hook from
  the caller (pruning's mask re-application) runs after every step.
- distillation: the student also matches its teacher's softened outputs (Hinton et al., 2015):
  alpha * T² * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels).

Recovery and distillation fine-tune a trained model: only modules whose own parameters all train
are put in training mode, so a frozen backbone's batch-norm statistics do not drift, and
parameter-less dropout / drop-path stay off (a short fine-tune needs no extra noise).
"""

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Called with the model after every optimizer step.
StepHook = Callable[[nn.Module], None]


class TrainingTask(ABC):
    """The loss and the training-mode rule of a training run."""

    def to(self, device: torch.device) -> "TrainingTask":
        """Move what the task holds (class weights, a teacher) to `device`."""
        return self

    def set_train_mode(self, model: nn.Module) -> None:
        """Put `model` in the mode it trains in; called before every epoch."""
        model.train()

    @abstractmethod
    def loss(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of one batch, with `model`'s forward pass."""

    def after_step(self, model: nn.Module) -> None:
        """Runs after every optimizer step: nothing, unless the task must restore something."""
        return None


class ClassificationTask(TrainingTask):
    """`loss_fn(logits, labels)`: cross-entropy or focal loss, class weights and smoothing."""

    def __init__(self, loss_fn: nn.Module) -> None:
        self.loss_fn = loss_fn

    def to(self, device: torch.device) -> "ClassificationTask":
        self.loss_fn.to(device)
        return self

    def loss(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(model(inputs), labels)


class RecoveryTask(TrainingTask):
    """Cross-entropy on the labels for a compressed model; `after_step` (e.g. zeroing pruned
    weights again) runs after every optimizer step."""

    def __init__(self, after_step: StepHook | None = None) -> None:
        self.step_hook = after_step

    def set_train_mode(self, model: nn.Module) -> None:
        _train_tuned_modules(model)

    def loss(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(inputs), labels)

    def after_step(self, model: nn.Module) -> None:
        if self.step_hook is not None:
            self.step_hook(model)


class DistillationTask(TrainingTask):
    """The student learns from `teacher`'s logits softened by `temperature` (weight `alpha`) and
    from the labels (weight 1 - alpha). The teacher only answers: eval mode, no gradients."""

    def __init__(self, teacher: nn.Module, temperature: float, alpha: float) -> None:
        if not 0.0 <= alpha <= 1.0 or temperature <= 0:
            raise ValueError(
                f"Need 0 <= alpha <= 1 and temperature > 0, not {alpha}, {temperature}"
            )
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha

    def to(self, device: torch.device) -> "DistillationTask":
        self.teacher.to(device)
        return self

    def set_train_mode(self, model: nn.Module) -> None:
        _train_tuned_modules(model)
        self.teacher.eval()

    def loss(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = model(inputs)
        with torch.no_grad():
            soft_targets = self.teacher(inputs)
        return self.alpha * distillation_loss(logits, soft_targets, self.temperature) + (
            1.0 - self.alpha
        ) * F.cross_entropy(logits, labels)


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


def _train_tuned_modules(model: nn.Module) -> None:
    """Training mode for exactly the modules that have parameters, all of them trainable."""
    model.eval()
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if own and all(parameter.requires_grad for parameter in own):
            module.train()
