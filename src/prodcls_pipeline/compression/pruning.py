"""Magnitude pruning of a trained classifier, on copies: the model passed in is never changed.

- Unstructured: the globally smallest conv/linear weights become zeros. The layers keep their
  shapes, so files and dense kernels stay as large and as fast; what it measures is how much of
  the network is redundant.
- Channel-structured: the least important expansion channels of every inverted-residual block
  (EfficientNet-Lite / MobileNetV2 family) are cut out, so every layer that touches them really
  shrinks and the exported model is smaller and faster.
"""

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune

PRUNABLE = (nn.Conv2d, nn.Linear)
# Kept channel counts are multiples of this: vectorised CPU kernels work in such blocks.
CHANNEL_MULTIPLE = 8
_BLOCK_PARTS = {
    "conv_pw": nn.Conv2d,
    "bn1": nn.BatchNorm2d,
    "conv_dw": nn.Conv2d,
    "bn2": nn.BatchNorm2d,
    "conv_pwl": nn.Conv2d,
}


def prune_unstructured(model: nn.Module, sparsity: float) -> nn.Module:
    """A copy of `model` with the `sparsity` share of its conv/linear weights (smallest |w|
    over the whole network) set to zero for good."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"Unstructured sparsity must be in [0, 1), not {sparsity}")
    pruned = copy.deepcopy(model)
    weights = [(module, "weight") for module in pruned.modules() if isinstance(module, PRUNABLE)]
    if not weights:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear weight to prune")
    prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=sparsity)
    for module, name in weights:
        prune.remove(module, name)
    return pruned


def weight_sparsity(model: nn.Module) -> float:
    """The share of conv/linear weights that are exactly zero."""
    weights = [m.weight for m in model.modules() if isinstance(m, PRUNABLE)]
    total = sum(weight.numel() for weight in weights)
    return sum(int((weight == 0).sum()) for weight in weights) / total


def zero_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{parameter name: mask of its non-zero entries} of every conv/linear weight: what a
    fine-tune must multiply back in to keep unstructured-pruned weights at zero."""
    return {
        f"{name}.weight" if name else "weight": (module.weight != 0)
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE)
    }


def zero_keeper(model: nn.Module) -> Callable[[nn.Module], None]:
    """A training step hook that zeroes again, in the model it is given (`model` or a copy),
    the conv/linear weights that are zero in `model` now: unstructured pruning survives the
    recovery fine-tune."""
    masks = zero_masks(model)

    @torch.no_grad()
    def keep_zeros(tuned: nn.Module) -> None:
        parameters = dict(tuned.named_parameters())
        for name, mask in masks.items():
            parameters[name].mul_(mask)

    return keep_zeros


def prune_channels(model: nn.Module, fraction: float) -> nn.Module:
    """A copy of `model` with `fraction` of the expansion channels of every inverted-residual
    block removed (rounded to keep a multiple of 8, at least 8).

    A channel's importance is |bn2 gamma| × the L1 norm of its conv_pwl column: the scale it
    leaves the depthwise stage with times how much of it reaches the block's output. The input
    side (|bn1 gamma| × the conv_pw filter) says less: bn1 and then bn2 each divide out the
    scale of what precedes them, so neither factor survives to the output.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"Channel fraction must be in [0, 1), not {fraction}")
    pruned = copy.deepcopy(model)
    blocks = [module for module in pruned.modules() if _is_inverted_residual(module)]
    if not blocks:
        raise ValueError(
            f"Channel pruning needs inverted-residual blocks ({', '.join(_BLOCK_PARTS)} without "
            f"squeeze-excitation), as in timm's EfficientNet-Lite and MobileNetV2; "
            f"{type(model).__name__} has none. Use unstructured pruning instead."
        )
    for block in blocks:
        _shrink_block(block, _kept_count(block.conv_pw.out_channels, fraction))
    return pruned


def _is_inverted_residual(module: nn.Module) -> bool:
    return (
        all(isinstance(getattr(module, part, None), kind) for part, kind in _BLOCK_PARTS.items())
        and isinstance(getattr(module, "se", nn.Identity()), nn.Identity)
        and module.conv_dw.groups == module.conv_dw.in_channels == module.conv_pw.out_channels
    )


def _kept_count(channels: int, fraction: float) -> int:
    kept = round(channels * (1.0 - fraction) / CHANNEL_MULTIPLE) * CHANNEL_MULTIPLE
    return min(channels, max(CHANNEL_MULTIPLE, kept))


@torch.no_grad()
def _shrink_block(block: nn.Module, kept: int) -> None:
    importance = block.bn2.weight.abs() * block.conv_pwl.weight.abs().sum(dim=(0, 2, 3))
    # In their original order, so that fraction 0 gives back the very same block.
    keep = importance.topk(kept).indices.sort().values
    _keep_outputs(block.conv_pw, keep)
    _keep_features(block.bn1, keep)
    _keep_outputs(block.conv_dw, keep)
    block.conv_dw.in_channels = block.conv_dw.groups = kept
    _keep_features(block.bn2, keep)
    block.conv_pwl.weight = _sliced(block.conv_pwl.weight, block.conv_pwl.weight[:, keep])
    block.conv_pwl.in_channels = kept


def _keep_outputs(conv: nn.Conv2d, keep: torch.Tensor) -> None:
    conv.weight = _sliced(conv.weight, conv.weight[keep])
    if conv.bias is not None:
        conv.bias = _sliced(conv.bias, conv.bias[keep])
    conv.out_channels = len(keep)


def _keep_features(norm: nn.BatchNorm2d, keep: torch.Tensor) -> None:
    """Every per-channel tensor of the layer follows its channels: running statistics, and
    any other buffer one (recorded batch-norm inputs, say)."""
    norm.weight = _sliced(norm.weight, norm.weight[keep])
    norm.bias = _sliced(norm.bias, norm.bias[keep])
    for name, buffer in list(norm.named_buffers(recurse=False)):
        if buffer.dim() == 1:
            setattr(norm, name, buffer[keep])
    norm.num_features = len(keep)


def _sliced(parameter: nn.Parameter, values: torch.Tensor) -> nn.Parameter:
    """Index selection copies already; a frozen parameter must stay frozen."""
    return nn.Parameter(values, requires_grad=parameter.requires_grad)
