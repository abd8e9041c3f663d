"""Batch-norm statistics after pruning, matched to what the unpruned model's layers saw.

Pruning moves the input of every normalisation layer after a removed weight, so the running
statistics learnt before are off. Re-estimating them from scratch on a few product images
(AdaBN) also throws away the ImageNet statistics a frozen backbone was trained with: on the
bundled sample that alone cost 8 points of top-1 with nothing pruned. Here each layer's
statistics move only by how much pruning moved its input, measured on the same images: a layer
whose input did not move keeps them, and one whose input did passes on the output distribution
the unpruned model had.

    recorded = record_input_statistics(model, batches)      # before pruning
    pruned = match_batch_norm(prune_channels(recorded, 0.25), batches)
"""

import copy
from collections.abc import Callable, Iterable
from functools import partial

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.hooks import RemovableHandle
from tqdm.auto import tqdm

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]
INPUT_MEAN, INPUT_VAR = "input_mean", "input_var"
# Channels whose recorded input never varied (dead after a ReLU) keep their statistics.
_CONSTANT_VARIANCE = 1e-12


class _Moments:
    """Per-channel running sums of a layer's input, accumulated in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.total: torch.Tensor | float = 0.0
        self.squares: torch.Tensor | float = 0.0

    def add(self, inputs: torch.Tensor) -> None:
        values = inputs.detach().double().transpose(0, 1).reshape(inputs.shape[1], -1)
        self.count += values.shape[1]
        self.total = self.total + values.sum(dim=1)
        self.squares = self.squares + values.square().sum(dim=1)

    def mean_and_variance(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / self.count
        return mean.float(), (self.squares / self.count - mean.square()).clamp_min(0.0).float()


@torch.no_grad()
def record_input_statistics(model: nn.Module, batches: Batches) -> nn.Module:
    """A copy of `model` whose batch-norm layers carry the per-channel mean and variance of
    their input over `batches()`, as buffers that pruning slices along with the channels."""
    recorded = copy.deepcopy(model).eval()
    moments = {norm: _Moments() for norm in _norms(recorded)}
    hooks = [
        norm.register_forward_pre_hook(lambda _, inputs, m=m: m.add(inputs[0]))
        for norm, m in moments.items()
    ]
    _forward_pass(recorded, batches, hooks, "record batch-norm inputs")
    for norm, m in moments.items():
        mean, variance = m.mean_and_variance()
        norm.register_buffer(INPUT_MEAN, mean)
        norm.register_buffer(INPUT_VAR, variance)
    return recorded


@torch.no_grad()
def match_batch_norm(model: nn.Module, batches: Batches) -> nn.Module:
    """In place: each batch-norm layer's running statistics shifted and scaled by how its input
    over `batches()` differs from the recorded one; the recorded buffers are then dropped.
    Returns the model in eval mode.

    One pass does every layer: during it each layer standardises a batch with the batch's own
    moments and maps it onto the recorded output moments, so the layers after it already see
    their corrected input.
    """
    unrecorded = [
        name
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm) and not hasattr(module, INPUT_MEAN)
    ]
    if unrecorded:
        raise ValueError(
            f"Batch-norm layers without recorded input statistics: {', '.join(unrecorded)}; "
            "call record_input_statistics on the model before pruning it"
        )
    moments = {norm: _Moments() for norm in _norms(model)}
    hooks = [
        norm.register_forward_hook(partial(_matched, moments=m)) for norm, m in moments.items()
    ]
    _forward_pass(model.eval(), batches, hooks, "match batch norm")
    for norm, m in moments.items():
        _move_statistics(norm, *m.mean_and_variance())
    return model


def _forward_pass(
    model: nn.Module, batches: Batches, hooks: list[RemovableHandle], description: str
) -> None:
    """Every batch through `model` once, for what its hooks collect; the hooks go afterwards."""
    try:
        for images, _ in tqdm(batches(), desc=description, unit="batch"):
            model(images)
    finally:
        for hook in hooks:
            hook.remove()


def _norms(model: nn.Module) -> list[_BatchNorm]:
    return [module for module in model.modules() if isinstance(module, _BatchNorm)]


def _matched(
    norm: _BatchNorm, inputs: tuple[torch.Tensor, ...], _: torch.Tensor, moments: _Moments
) -> torch.Tensor:
    """The layer's output with the batch standardised, then given the recorded output moments."""
    x = inputs[0]
    moments.add(x)
    dims = [dim for dim in range(x.dim()) if dim != 1]
    shape = [1, -1] + [1] * (x.dim() - 2)
    batch_mean, batch_var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
    weight, bias = _affine(norm)
    deviation = torch.sqrt(norm.running_var + norm.eps)
    scale = weight * torch.sqrt(getattr(norm, INPUT_VAR) + norm.eps) / deviation
    shift = weight * (getattr(norm, INPUT_MEAN) - norm.running_mean) / deviation + bias
    standardised = (x - batch_mean.view(shape)) / torch.sqrt(batch_var + norm.eps).view(shape)
    return _after_normalisation(norm, scale.view(shape) * standardised + shift.view(shape))


def _move_statistics(norm: _BatchNorm, mean: torch.Tensor, variance: torch.Tensor) -> None:
    recorded_mean, recorded_var = getattr(norm, INPUT_MEAN), getattr(norm, INPUT_VAR)
    varied = recorded_var > _CONSTANT_VARIANCE
    ratio = torch.where(varied, variance / recorded_var.clamp_min(_CONSTANT_VARIANCE), 1.0)
    shifted = mean - (recorded_mean - norm.running_mean) * torch.sqrt(ratio)
    norm.running_mean.copy_(torch.where(varied, shifted, norm.running_mean))
    norm.running_var.mul_(ratio)
    delattr(norm, INPUT_MEAN)
    delattr(norm, INPUT_VAR)


def _affine(norm: _BatchNorm) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    return (
        norm.weight if norm.weight is not None else 1.0,
        norm.bias if norm.bias is not None else 0.0,
    )


def _after_normalisation(norm: _BatchNorm, normalised: torch.Tensor) -> torch.Tensor:
    """timm's BatchNormAct2d applies its dropout and activation inside the norm module."""
    for part in ("drop", "act"):
        normalised = getattr(norm, part, nn.Identity())(normalised)
    return normalised
