"""The training augmentation policy: its validated document, its transform and a visual preview.

The policy is a plain JSON document so that the train stage rebuilds exactly the transform the
augment stage checked and previewed, and DVC sees any change to it as a changed file.
"""

from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from prodcls_pipeline.core.plotting import configure_matplotlib
from prodcls_pipeline.core.schema import TRAIN
from prodcls_pipeline.data.preprocessing import Preprocessing, tensor_normalisation

configure_matplotlib()

COLOR_JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")
POLICY_KEYS = ("random_resized_crop_scale", "horizontal_flip_p", "rotation_degrees", "color_jitter")
# The augment params section also configures the preview; those keys are not part of the policy.
PREVIEW_KEYS = ("preview_images", "preview_views")
# torchvision shifts hue by at most half a turn either way.
MAX_HUE = 0.5
MAX_ROTATION_DEGREES = 180.0
# torchvision rotates tensors with nearest or bilinear interpolation only.
ROTATION_INTERPOLATION = InterpolationMode.BILINEAR
PREVIEW_CELL_INCHES = 1.8


def augmentation_policy(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """The validated, normalised policy document; a ValueError names the first bad value."""
    unknown = sorted(set(params) - {*POLICY_KEYS, *PREVIEW_KEYS})
    missing = [key for key in POLICY_KEYS if key not in params]
    if unknown or missing:
        raise ValueError(f"augment params: unknown keys {unknown}, missing keys {missing}")
    scale = params["random_resized_crop_scale"]
    if not isinstance(scale, Sequence) or isinstance(scale, str) or len(scale) != 2:
        raise ValueError(f"augment.random_resized_crop_scale must be [lo, hi], got {scale!r}")
    lo = _number("random_resized_crop_scale[0]", scale[0], 0.0, 1.0)
    hi = _number("random_resized_crop_scale[1]", scale[1], 0.0, 1.0)
    if not 0 < lo <= hi:
        raise ValueError(
            f"augment.random_resized_crop_scale must satisfy 0 < lo <= hi <= 1, got [{lo}, {hi}]"
        )
    jitter = params["color_jitter"]
    if not isinstance(jitter, dict) or set(jitter) != set(COLOR_JITTER_KEYS):
        raise ValueError(f"augment.color_jitter must have exactly the keys {COLOR_JITTER_KEYS}")
    return {
        "random_resized_crop_scale": [lo, hi],
        "horizontal_flip_p": _number("horizontal_flip_p", params["horizontal_flip_p"], 0.0, 1.0),
        "rotation_degrees": _number(
            "rotation_degrees", params["rotation_degrees"], 0.0, MAX_ROTATION_DEGREES
        ),
        "color_jitter": {
            key: _number(f"color_jitter.{key}", jitter[key], 0.0, MAX_HUE if key == "hue" else None)
            for key in COLOR_JITTER_KEYS
        },
        "seed": int(seed),
    }


def build_train_transform(
    policy: dict[str, Any], preprocessing: Preprocessing
) -> Callable[[Image.Image], torch.Tensor]:
    """A random RGB image → normalised tensor transform; it draws from torch's global RNG."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(
                preprocessing.input_size,
                scale=tuple(policy["random_resized_crop_scale"]),
                interpolation=InterpolationMode(preprocessing.interpolation),
                antialias=True,
            ),
            v2.RandomHorizontalFlip(policy["horizontal_flip_p"]),
            v2.RandomRotation(policy["rotation_degrees"], interpolation=ROTATION_INTERPOLATION),
            v2.ColorJitter(**policy["color_jitter"]),
            *tensor_normalisation(preprocessing),
        ]
    )


def augmented_views(
    image: Image.Image,
    transform: Callable[[Image.Image], torch.Tensor],
    views: int,
    seed: int,
) -> list[torch.Tensor]:
    """`views` augmented tensors of `image`, the same for the same seed.

    The global RNG is forked so that the caller's random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [transform(image) for _ in range(views)]


def select_preview_images(splits: pd.DataFrame, count: int) -> pd.DataFrame:
    """Up to `count` training rows, one per class first, each class's lowest sha256 first."""
    train = splits[splits["split"] == TRAIN].sort_values("sha256")
    first_of_class = train.drop_duplicates("label")
    return pd.concat([first_of_class, train.drop(first_of_class.index)]).head(count)


def policy_summary(policy: dict[str, Any]) -> str:
    """One line that a reader of the preview can check against params.yaml."""
    lo, hi = policy["random_resized_crop_scale"]
    jitter = ", ".join(f"{key} {value:g}" for key, value in policy["color_jitter"].items())
    return (
        f"crop scale {lo:g}–{hi:g} · flip p {policy['horizontal_flip_p']:g} · "
        f"rotation ±{policy['rotation_degrees']:g}° · jitter {jitter} · seed {policy['seed']}"
    )


def preview_figure(
    images: Sequence[Image.Image],
    policy: dict[str, Any],
    preprocessing: Preprocessing,
    views: int,
    seed: int,
    labels: Sequence[str] = (),
) -> Figure:
    """A grid: per row the original image, then `views` augmented views as the model sees them.

    A bare Figure renders with Agg when saved and is not registered with pyplot, so nothing
    needs closing and no global backend is switched.
    """
    if not images:
        raise ValueError("No images to preview: the split has no training images")
    transform = build_train_transform(policy, preprocessing)
    columns = views + 1
    figure = Figure(figsize=(columns * PREVIEW_CELL_INCHES, len(images) * PREVIEW_CELL_INCHES))
    axes = figure.subplots(len(images), columns, squeeze=False)
    for row, image in enumerate(images):
        # Each row gets its own seed so rows do not share flips and rotations.
        tensors = augmented_views(image, transform, views, seed + row)
        axes[row, 0].imshow(np.asarray(image))
        axes[row, 0].set_title(labels[row] if row < len(labels) else "original", fontsize="small")
        for column, tensor in enumerate(tensors, start=1):
            axes[row, column].imshow(_displayable(tensor, preprocessing))
            if row == 0:
                axes[row, column].set_title(f"view {column}", fontsize="small")
    for axis in axes.flat:
        axis.set_axis_off()
    figure.suptitle(policy_summary(policy), fontsize="small")
    return figure


def _displayable(tensor: torch.Tensor, preprocessing: Preprocessing) -> np.ndarray:
    """Undo the normalisation: a C×H×W tensor → an H×W×C array in [0, 1] for imshow."""
    mean = torch.tensor(preprocessing.mean).view(-1, 1, 1)
    std = torch.tensor(preprocessing.std).view(-1, 1, 1)
    return (tensor * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def _number(name: str, value: object, lo: float, hi: float | None) -> float:
    """`value` as a float in [lo, hi] (no upper bound when hi is None)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"augment.{name} must be a number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"[{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
        raise ValueError(f"augment.{name} must be {bound}, got {value}")
    return float(value)
