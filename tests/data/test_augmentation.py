import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image

from prodcls_pipeline.data import augmentation
from prodcls_pipeline.data.preprocessing import Preprocessing
from prodcls_pipeline.framework.datasets import AtomicMatplotlibDataset
from prodcls_pipeline.framework.params import AugmentParams
from prodcls_pipeline.models.backbones import BACKBONES
from prodcls_pipeline.pipelines.augment import create_pipeline

SEED = 42
PARAMS = {
    "random_resized_crop_scale": [0.6, 1],
    "horizontal_flip_p": 0.5,
    "rotation_degrees": 15,
    "color_jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.03},
    "preview_images": 3,
    "preview_views": 2,
}
LITE0 = BACKBONES["efficientnet_lite0"].preprocessing
IMAGENET = Preprocessing(
    input_size=64, resize_size=72, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


def _image(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


class FakeImageStore:
    def __init__(self, shas: list[str]) -> None:
        self._images = {sha: _image(index) for index, sha in enumerate(shas)}

    def open(self, sha256: str) -> Image.Image:
        return self._images[sha256]


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so a test can read intermediate outputs."""

    def _release(self) -> None:
        pass


def _policy(**changes) -> dict:
    return augmentation.augmentation_policy({**copy.deepcopy(PARAMS), **changes}, SEED)


def _splits() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sha256": ["a1", "a2", "b1", "b2", "c1", "d1"],
            "label": ["apple", "apple", "pear", "pear", "plum", "kiwi"],
            "coarse_label": "",
            "split": ["train", "train", "train", "train", "test", "train"],
        }
    )


def test_policy_is_normalised_json_and_leaves_out_preview_settings():
    policy = _policy()
    assert policy["random_resized_crop_scale"] == [0.6, 1.0]
    assert isinstance(policy["rotation_degrees"], float)
    assert policy["seed"] == SEED
    assert not set(augmentation.PREVIEW_KEYS) & set(policy)
    assert json.loads(json.dumps(policy)) == policy


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"random_resized_crop_scale": [0.9, 0.5]}, "lo <= hi"),
        ({"random_resized_crop_scale": [0.0, 0.5]}, "0 < lo"),
        ({"random_resized_crop_scale": [0.5, 1.5]}, r"scale\[1\] must be \[0, 1\]"),
        ({"random_resized_crop_scale": 0.5}, r"\[lo, hi\]"),
        ({"horizontal_flip_p": 1.5}, r"horizontal_flip_p must be \[0, 1\]"),
        ({"horizontal_flip_p": -0.1}, "horizontal_flip_p"),
        ({"horizontal_flip_p": True}, "must be a number"),
        ({"rotation_degrees": "15"}, "must be a number"),
        ({"rotation_degrees": -5}, "rotation_degrees"),
        ({"color_jitter": {"brightness": 0.3}}, "exactly the keys"),
        (
            {"color_jitter": {"brightness": -1, "contrast": 0, "saturation": 0, "hue": 0}},
            "color_jitter.brightness",
        ),
        (
            {"color_jitter": {"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0.6}},
            "color_jitter.hue",
        ),
        ({"horizontal_flip": 0.5}, r"unknown keys \['horizontal_flip'\]"),
    ],
)
def test_bad_policy_values_raise_a_clear_error(changes, message):
    with pytest.raises(ValueError, match=message):
        _policy(**changes)


def test_missing_policy_key_raises():
    params = {key: value for key, value in PARAMS.items() if key != "rotation_degrees"}
    with pytest.raises(ValueError, match=r"missing keys \['rotation_degrees'\]"):
        augmentation.augmentation_policy(params, SEED)


@pytest.mark.parametrize("preprocessing", [LITE0, IMAGENET])
def test_train_transform_shape_dtype_and_range(preprocessing):
    transform = augmentation.build_train_transform(_policy(), preprocessing)
    tensor = transform(_image(0))
    size = preprocessing.input_size
    assert tensor.shape == (3, size, size)
    assert tensor.dtype == torch.float32
    mean = torch.tensor(preprocessing.mean).view(3, 1, 1)
    std = torch.tensor(preprocessing.std).view(3, 1, 1)
    # Normalisation maps pixel values in [0, 1] onto [(0 - mean) / std, (1 - mean) / std].
    eps = 1e-5
    assert (tensor >= -mean / std - eps).all()
    assert (tensor <= (1 - mean) / std + eps).all()


def test_views_are_reproducible_per_seed_and_leave_global_rng_alone():
    transform = augmentation.build_train_transform(_policy(), LITE0)
    image = _image(1)
    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    first = augmentation.augmented_views(image, transform, 3, seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    again = augmentation.augmented_views(image, transform, 3, seed=7)
    other = augmentation.augmented_views(image, transform, 3, seed=8)
    assert len(first) == 3
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert not torch.equal(first[0], first[1])


def test_preview_selection_prefers_distinct_training_classes():
    chosen = augmentation.select_preview_images(_splits(), 4)
    assert chosen["sha256"].tolist() == ["a1", "b1", "d1", "a2"]
    assert augmentation.select_preview_images(_splits(), 2)["label"].tolist() == ["apple", "pear"]


def test_preview_figure_grid_and_png(tmp_path):
    images = [_image(index) for index in range(3)]
    figure = augmentation.preview_figure(images, _policy(), LITE0, 4, SEED, labels=["a", "b", "c"])
    assert len(figure.axes) == 3 * (4 + 1)
    assert "flip p 0.5" in figure.texts[0].get_text()
    path = tmp_path / "preview.png"
    AtomicMatplotlibDataset(filepath=str(path)).save(figure)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_preview_without_images_raises():
    with pytest.raises(ValueError, match="No images"):
        augmentation.preview_figure([], _policy(), LITE0, 2, SEED)


def test_augment_pipeline_runs_on_memory_datasets():
    splits = _splits()
    catalog = DataCatalog(
        {
            "splits": MemoryDataset(splits),
            "image_store": MemoryDataset(
                FakeImageStore(list(splits["sha256"])), copy_mode="assign"
            ),
            "params:augment": MemoryDataset(AugmentParams.model_validate(PARAMS)),
            "params:train.backbone": MemoryDataset("efficientnet_lite0"),
            "params:train.weights_file": MemoryDataset(None),
            "params:seed": MemoryDataset(SEED),
            "augmentation_policy": KeptDataset(),
        }
    )
    outputs = SequentialRunner().run(create_pipeline(), catalog)
    assert catalog["augmentation_policy"].load() == _policy()
    figure = outputs["augmentation_preview"].load()
    assert len(figure.axes) == PARAMS["preview_images"] * (PARAMS["preview_views"] + 1)
