"""Fixtures shared by the test suite: the bundled sample dataset and synthetic images."""

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import SAMPLE_DIR
from PIL import Image

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
