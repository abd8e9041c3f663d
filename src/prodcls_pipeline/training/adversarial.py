"""Adversaries that replace part of each training batch with attacked examples.

The attack always perturbs the input image (epsilon in pixel units), whatever the model sees.
In `full` mode the model sees images, so the attack runs on it directly. In `partial` mode it
sees cached activations, which an image-space attack cannot perturb: the batch's images are
regenerated, attacked through the whole network (frozen prefix + trainable suffix), and the
prefix's activations of the adversarial images replace the cached ones. That costs a forward
and backward pass of the full network per attacked image, so it is several times slower than
clean partial training.
"""

from collections.abc import Callable

import torch
from torch import nn

from prodcls_pipeline.data.preprocessing import Preprocessing
from prodcls_pipeline.evaluation.attacks import fgsm, pgd
from prodcls_pipeline.training.loop import AdversarialConfig, Adversary

ATTACKS = ("fgsm", "pgd")


def image_adversary(config: AdversarialConfig, preprocessing: Preprocessing) -> Adversary:
    """For models whose inputs are normalised images."""
    _check(config)

    def attack(
        model: nn.Module, images: torch.Tensor, labels: torch.Tensor, _indices: torch.Tensor
    ) -> torch.Tensor:
        return _attack_in_eval_mode(model, images, labels, config, preprocessing)

    return attack


def activation_adversary(
    config: AdversarialConfig,
    preprocessing: Preprocessing,
    prefix: nn.Module,
    images_of: Callable[[torch.Tensor], torch.Tensor],
) -> Adversary:
    """For models fed `prefix(image)`: `images_of(sample indices)` regenerates the images."""
    _check(config)

    def attack(
        model: nn.Module, _activations: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor
    ) -> torch.Tensor:
        device = labels.device
        prefix.to(device)
        whole = nn.Sequential(prefix, model)
        images = images_of(indices).to(device)
        adversarial = _attack_in_eval_mode(whole, images, labels, config, preprocessing)
        with torch.no_grad():
            return prefix(adversarial)

    return attack


def _attack_in_eval_mode(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AdversarialConfig,
    preprocessing: Preprocessing,
) -> torch.Tensor:
    """Batch-norm statistics must not learn from the attack's own forward passes."""
    was_training = model.training
    model.eval()
    try:
        mean, std = preprocessing.mean, preprocessing.std
        if config.attack == "fgsm":
            return fgsm(model, images, labels, config.epsilon, mean, std)
        return pgd(
            model, images, labels, config.epsilon, config.pgd_alpha, config.pgd_steps, mean, std
        )
    finally:
        model.train(was_training)


def _check(config: AdversarialConfig) -> None:
    if config.attack not in ATTACKS:
        raise ValueError(
            f"train.adversarial.attack must be one of {ATTACKS}, not {config.attack!r}"
        )
    if not 0 <= config.fraction <= 1:
        raise ValueError(f"train.adversarial.fraction must be in [0, 1], not {config.fraction}")
