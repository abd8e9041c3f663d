"""Optimizers with layer-wise learning rates, and the learning-rate schedule with warmup."""

import math
from collections.abc import Iterable

import torch
from torch import nn

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")


def parameter_groups(
    head: nn.Module,
    backbone: nn.Module,
    head_learning_rate: float,
    backbone_learning_rate: float,
) -> list[dict]:
    """The head learns at its own rate, the tuned backbone layers at theirs (usually lower, so
    pretrained features are adjusted rather than overwritten). Frozen parameters are left out."""
    groups = [{"params": _trainable(head.parameters()), "lr": head_learning_rate, "name": "head"}]
    backbone_parameters = _trainable(backbone.parameters())
    if backbone_parameters:
        groups.append(
            {"params": backbone_parameters, "lr": backbone_learning_rate, "name": "backbone"}
        )
    return groups


def build_optimizer(
    groups: list[dict],
    name: str,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
) -> torch.optim.Optimizer:
    """AdamW, or SGD with (Nesterov) momentum; each group keeps its own learning rate."""
    if name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            groups, lr=groups[0]["lr"], momentum=momentum, nesterov=nesterov and momentum > 0,
            weight_decay=weight_decay,
        )  # fmt: skip
    raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, not {name!r}")


def learning_rate_factor(
    epoch: int,
    schedule: str,
    max_epochs: int,
    warmup_epochs: int,
    step_size: int,
    step_gamma: float,
) -> float:
    """Multiplier of the base learning rates during 0-based `epoch`.

    A linear warmup reaches the full rate at epoch `warmup_epochs`; the schedule then runs over
    the remaining epochs: cosine decays to 0, step multiplies by `step_gamma` every `step_size`.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"train.schedule must be one of {SCHEDULES}, not {schedule!r}")
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    after_warmup = epoch - warmup_epochs
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * after_warmup / max(1, max_epochs - warmup_epochs)))
    if schedule == "step":
        return step_gamma ** (after_warmup // step_size)
    return 1.0


def _trainable(parameters: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    return [parameter for parameter in parameters if parameter.requires_grad]
