"""An RGB image → the model's input tensor, as the package's preprocessing.json describes it:
resize, centre crop and normalise in numpy and Pillow, without torch."""

from typing import Any

import numpy as np
from PIL import Image

_PIXEL_MAX = 255.0


def preprocess(image: Image.Image, spec: dict[str, Any]) -> np.ndarray:
    """An RGB image → the model's input [3, S, S].

    Sizes and crop offsets are computed as torchvision's Resize and CenterCrop compute them,
    so the result matches the training transform up to the resampling kernel.
    """
    shorter = int(spec["resize"]["shorter_side"])
    resample = Image.Resampling[spec["resize"]["interpolation"].upper()]
    image = image.resize(_resized_size(image.size, shorter), resample)
    crop = int(spec["center_crop"])
    left = int(round((image.width - crop) / 2.0))
    top = int(round((image.height - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.asarray(image, dtype=np.float32) / _PIXEL_MAX
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1).astype(spec["input_dtype"])


def _resized_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """(width, height) with the shorter side `shorter`; the longer truncated, as torchvision."""
    width, height = size
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter
