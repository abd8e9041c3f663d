import dataclasses

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from helpers import CONFIG

from prodcls_pipeline.core.digests import sha256_file
from prodcls_pipeline.models.backbone_split import activation_key, split_backbone
from prodcls_pipeline.models.backbones import (
    create_backbone,
    preprocessing_for,
    weights_digest,
    weights_path,
)
from prodcls_pipeline.models.classifier import build_classifier, make_checkpoint
from prodcls_pipeline.training import modes
from prodcls_pipeline.training.loop import AdversarialConfig
from prodcls_pipeline.training.modes import fit_full, fit_partial, run_fingerprint
from prodcls_pipeline.training.samples import ImageSamples

SIZE = 32
FAST = dataclasses.replace(
    CONFIG, max_epochs=10, learning_rate=0.02, backbone_learning_rate=0.02, dropout=0.0
)
FGSM = AdversarialConfig(True, "fgsm", 0.03, 2, 0.01, 0.5)


def tiny_backbone(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("test_efficientnet", num_classes=0).eval()


def coloured_images(seed: int, per_class: int) -> tuple[torch.Tensor, np.ndarray]:
    """Class k: noise around a colour; separable, but only through the network."""
    generator = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    labels = np.repeat(np.arange(3), per_class)
    noise = torch.randn(len(labels), 3, SIZE, SIZE, generator=generator)
    return colours[labels][:, :, None, None] * 0.5 + noise, labels


def prefix_outputs(backbone: torch.nn.Module, block: int, images: torch.Tensor) -> torch.Tensor:
    prefix, _ = split_backbone(backbone, block)
    with torch.no_grad():
        return prefix(images)


def test_prefix_and_suffix_compose_to_the_backbone() -> None:
    backbone = tiny_backbone()
    images, _ = coloured_images(0, 2)
    prefix, suffix = split_backbone(backbone, 2)
    with torch.no_grad():
        assert torch.allclose(suffix(prefix(images)), backbone(images), atol=1e-5)
    assert not any(parameter.requires_grad for parameter in prefix.parameters())
    assert activation_key("efficientnet_lite0", 5) == "efficientnet_lite0.blocks5"
    with pytest.raises(ValueError, match="partial_block"):
        split_backbone(backbone, len(backbone.blocks) - 1)


def partial_run(backbone, config=FAST, images_of=None):
    train_images, train_labels = coloured_images(0, 16)
    val_images, val_labels = coloured_images(1, 8)
    return fit_partial(
        backbone, 1,
        prefix_outputs(backbone, 1, train_images).half(), train_labels,
        prefix_outputs(backbone, 1, val_images).half(), val_labels,
        3, config, 3, preprocessing_for("efficientnet_lite0"), images_of,
    )  # fmt: skip


def test_partial_mode_learns_from_cached_activations_and_is_deterministic() -> None:
    first, second = partial_run(tiny_backbone()), partial_run(tiny_backbone())
    assert first.history["val_accuracy"].max() > 0.9
    assert first.history.equals(second.history)


def test_adversarial_partial_training_attacks_the_images() -> None:
    train_images, _ = coloured_images(0, 16)
    requested = []

    def images_of(indices: torch.Tensor) -> torch.Tensor:
        requested.extend(indices.tolist())
        return train_images[indices]

    clean = partial_run(tiny_backbone())
    adversarial = partial_run(
        tiny_backbone(), dataclasses.replace(FAST, adversarial=FGSM), images_of
    )
    assert len(requested) == FAST.max_epochs * len(train_images) * FGSM.fraction
    assert not torch.equal(clean.model.head.weight, adversarial.model.head.weight)
    with pytest.raises(ValueError, match="images"):
        partial_run(tiny_backbone(), dataclasses.replace(FAST, adversarial=FGSM))


def test_full_mode_with_online_transform_and_adversarial_batches() -> None:
    train_images, train_labels = coloured_images(0, 16)
    val_images, val_labels = coloured_images(1, 8)
    sha256s = [str(index) for index in range(len(train_images))]

    def samples(images, labels):
        return ImageSamples(
            sha256s[: len(labels)], labels, lambda sha: images[int(sha)], lambda x: x
        )

    backbone = tiny_backbone()
    before = [parameter.clone() for parameter in backbone.parameters()]
    result = fit_full(
        backbone, samples(train_images, train_labels), samples(val_images, val_labels), 3,
        dataclasses.replace(FAST, adversarial=FGSM), 3, preprocessing_for("efficientnet_lite0"),
    )  # fmt: skip
    assert result.history["val_accuracy"].max() > 0.9
    assert any(not torch.equal(a, b) for a, b in zip(before, backbone.parameters(), strict=True))


@pytest.mark.parametrize("mode", ["partial", "full"])
def test_checkpoint_rebuilds_the_fine_tuned_classifier(mode) -> None:
    backbone, preprocessing = create_backbone("efficientnet_lite0")
    images, labels = coloured_images(0, 4)
    config = dataclasses.replace(FAST, max_epochs=1, batch_size=12)
    if mode == "partial":
        activations = prefix_outputs(backbone, 5, images)
        result = fit_partial(
            backbone, 5, activations, labels, activations, labels, 3, config, 0, preprocessing
        )
        prefix, _ = split_backbone(backbone, 5)
        trained = torch.nn.Sequential(prefix, result.model)
    else:
        data = ImageSamples(
            [str(i) for i in range(len(labels))], labels, lambda sha: images[int(sha)], lambda x: x
        )
        result = fit_full(backbone, data, data, 3, config, 0, preprocessing)
        trained = result.model
    checkpoint = make_checkpoint(
        "efficientnet_lite0", None, ["a", "b", "c"], ["x"] * 3, preprocessing,
        result.model.head, backbone.state_dict(),
    )  # fmt: skip
    rebuilt = build_classifier(checkpoint)
    packaged = {key: value for key, value in checkpoint.items() if key != "backbone_state_dict"}
    pristine = build_classifier(packaged)
    with torch.no_grad():
        expected = trained.eval()(images)
        assert torch.allclose(rebuilt(images), expected, atol=1e-4)
        assert not torch.allclose(pristine(images), expected, atol=1e-4)


def test_the_run_fingerprint_covers_params_data_weights_and_code(monkeypatch) -> None:
    params = {"learning_rate": 0.1, "resume": True}
    splits = pd.DataFrame({"sha256": ["a", "b"], "label": ["x", "y"], "split": ["train", "val"]})
    policy = {"horizontal_flip_p": 0.5}
    base = run_fingerprint(params, 0, splits, policy, "weights-1")
    assert run_fingerprint({**params, "resume": False}, 0, splits, policy, "weights-1") == base
    changed = [
        run_fingerprint({**params, "learning_rate": 0.2}, 0, splits, policy, "weights-1"),
        run_fingerprint(params, 1, splits, policy, "weights-1"),
        run_fingerprint(params, 0, splits.assign(label=["y", "x"]), policy, "weights-1"),
        run_fingerprint(params, 0, splits, {"horizontal_flip_p": 0.0}, "weights-1"),
        run_fingerprint(params, 0, splits, policy, "weights-2"),
    ]
    monkeypatch.setattr(modes, "package_digest", lambda: "other code")
    changed.append(run_fingerprint(params, 0, splits, policy, "weights-1"))
    assert len({base, *changed}) == len(changed) + 1


def test_the_weights_digest_is_the_sha256_of_the_loaded_file() -> None:
    assert weights_digest("efficientnet_lite0") == sha256_file(weights_path("efficientnet_lite0"))
