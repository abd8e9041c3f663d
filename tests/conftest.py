"""Fixtures shared by the test suite: the bundled sample dataset, synthetic images, and the real
Lite0 classifier with its fp32 and int8 ONNX exports."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import LITE0_CALIBRATION, LITE0_PHOTOS, SAMPLE_DIR, lite0_checkpoint
from PIL import Image

from prodcls_pipeline.compression.int8 import quantize_int8
from prodcls_pipeline.data.preprocessing import eval_transform
from prodcls_pipeline.models.classifier import build_classifier, checkpoint_preprocessing
from prodcls_pipeline.models.onnx_export import export_onnx

MakeImage = Callable[..., Path]


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled Grocery Store subset (read-only: copy it before changing anything)."""
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"{SAMPLE_DIR} is missing: run scripts/build_sample.py")
    return SAMPLE_DIR


def _make_image(
    path: Path,
    color: tuple[int, ...] = (200, 30, 30),
    size: tuple[int, int] = (64, 48),
    mode: str = "RGB",
    **save_args,
) -> Path:
    """Write a solid-colour image to `path` (format from the suffix) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **save_args)
    return path


@pytest.fixture
def make_image() -> MakeImage:
    """`make_image(path, color=(r, g, b), size=(w, h), mode="RGB", **save_args) -> path`."""
    return _make_image


@pytest.fixture(scope="session")
def lite0() -> dict:
    """A Lite0 classifier checkpoint with ImageNet weights and a random head."""
    return lite0_checkpoint()


@pytest.fixture(scope="session")
def lite0_images(lite0: dict, sample_dir: Path) -> np.ndarray:
    """Bundled photos spread over the classes, preprocessed for Lite0; the first
    `LITE0_CALIBRATION` calibrate the int8 export. Real photos: smooth synthetic fields put the
    activations where int8 kernels without VNNI saturate, unlike anything the model serves."""
    photos = sorted(sample_dir.rglob("*.jpg"))
    chosen = photos[:: max(1, len(photos) // LITE0_PHOTOS)][:LITE0_PHOTOS]
    transform = eval_transform(checkpoint_preprocessing(lite0))
    return np.stack([transform(Image.open(path).convert("RGB")).numpy() for path in chosen])


@pytest.fixture(scope="session")
def lite0_fp32(lite0: dict) -> bytes:
    return export_onnx(build_classifier(lite0), input_size=224)


@pytest.fixture(scope="session")
def lite0_int8(lite0_fp32: bytes, lite0_images: np.ndarray) -> bytes:
    batches = range(0, LITE0_CALIBRATION, 4)
    return quantize_int8(lite0_fp32, (lite0_images[start : start + 4] for start in batches))
