"""How an RGB image becomes a backbone's input tensor: the spec and its transforms."""

from collections.abc import Callable
from dataclasses import asdict, dataclass

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
