"""FGSM and PGD attacks on normalised image batches, with the budget in pixel units.

Models here see normalised inputs, (pixel - mean) / std. An epsilon of 2/255 means "each pixel
moves by at most 2 of 255 grey levels", so the attack works in pixel space and normalises again;
adversarial images stay valid images (pixels within [0, 1]).
"""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional


def fgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """One signed-gradient step of size `epsilon` (Goodfellow et al., 2015)."""
    return pgd(model, images, labels, epsilon, alpha=epsilon, steps=1, mean=mean, std=std)


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    alpha: float,
    steps: int,
    mean: Sequence[float],
    std: Sequence[float],
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`steps` signed-gradient steps of size `alpha`, projected on the L∞ ball of `epsilon`
    around the clean pixels (Madry et al., 2018). Returns detached normalised images.

    The model's train/eval mode is left as it is, and its parameter gradients untouched.
    """
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    clean = (images.detach() * std_t + mean_t).clamp(0, 1)
    pixels = clean.clone()
    if random_start:
        noise = torch.rand(pixels.shape, generator=generator, device="cpu").to(pixels.device)
        pixels = (pixels + (noise * 2 - 1) * epsilon).clamp(0, 1)
    requires_grad = [parameter.requires_grad for parameter in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        for _ in range(steps):
            pixels.requires_grad_(True)
            loss = functional.cross_entropy(model((pixels - mean_t) / std_t), labels)
            (gradient,) = torch.autograd.grad(loss, pixels)
            with torch.no_grad():
                pixels = pixels + alpha * gradient.sign()
                pixels = torch.min(torch.max(pixels, clean - epsilon), clean + epsilon).clamp(0, 1)
    finally:
        for parameter, flag in zip(model.parameters(), requires_grad, strict=True):
            parameter.requires_grad_(flag)
    return ((pixels - mean_t) / std_t).detach()
