"""The one image decoder: its limits are checked from the header before any pixel is decoded, and
ingest and serving convert every mode to the same RGB pixels."""

import dataclasses
import io

import numpy as np
import pytest
from helpers import PACKAGE_LIMITS, PREPROCESSING, declared_png, forbid_pixel_decoding
from PIL import Image

from prodcls_pipeline.data.images import IngestSettings, normalise_image
from prodcls_pipeline.release.package import preprocessing_spec
from prodcls_serving.common.decoding import (
    ImageLimits,
    ImageOverLimits,
    ImageRejected,
    decode_image,
)
from prodcls_serving.inputs import ImageInputError, read_image
from prodcls_serving.preprocessing import preprocess

# Ingest under the project's limits, with nothing downscaled: the decoder's output is stored.
INGEST = IngestSettings(
    max_side=4096,
    normalised_quality=95,
    max_source_bytes=10**8,
    max_source_pixels=PACKAGE_LIMITS.max_pixels,
    max_aspect_ratio=PACKAGE_LIMITS.max_aspect_ratio,
    min_source_side=PACKAGE_LIMITS.min_side,
)
GRADIENT = np.linspace(0, 65535, 40 * 30).round().reshape(30, 40).astype(np.uint16)


def encode(image: Image.Image, image_format: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **save_args)
    return buffer.getvalue()


@pytest.fixture
def headers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_pixel_decoding(monkeypatch)


def test_the_spy_catches_a_decode(headers_only: None) -> None:
    """Without this the tests below could pass with the spy asleep."""
    with pytest.raises(AssertionError, match="decoded the pixels of a 4×4 image"):
        decode_image(encode(Image.new("RGB", (4, 4))), PACKAGE_LIMITS)


@pytest.mark.parametrize(
    ("width", "height", "reason"),
    [
        (8000, 8000, "too many pixels (8000×8000 > 40000000)"),
        (4000, 100, "aspect ratio too extreme (4000×100, 40.0:1 > 20:1)"),
        (100, 4000, "aspect ratio too extreme (100×4000, 40.0:1 > 20:1)"),
    ],
)
def test_a_header_beyond_the_limits_is_refused_before_decoding(
    headers_only: None, width: int, height: int, reason: str
) -> None:
    data = declared_png(width, height)
    assert len(data) < 500
    with pytest.raises(ImageOverLimits) as refused:
        decode_image(data, PACKAGE_LIMITS)
    assert refused.value.reason == reason
    assert refused.value.size == (width, height)


def test_pillows_own_decompression_bomb_limit_still_holds(headers_only: None) -> None:
    """10¹⁰ declared pixels: Pillow refuses them while reading the header, whatever the limits."""
    generous = ImageLimits(max_pixels=10**12, max_aspect_ratio=1.0)
    with pytest.raises(ImageRejected, match="too many pixels.*decompression bomb"):
        decode_image(declared_png(100_000, 100_000), generous)


def test_limits_are_inclusive() -> None:
    limits = ImageLimits(max_pixels=200, max_aspect_ratio=2)
    assert limits.violation(20, 10) is None
    assert limits.violation(10, 20) is None
    assert limits.violation(21, 10) == "too many pixels (21×10 > 200)"
    assert limits.violation(13, 6) == "aspect ratio too extreme (13×6, 2.2:1 > 2:1)"


def test_a_served_item_beyond_the_limits_names_the_item_and_the_reason(headers_only: None) -> None:
    with pytest.raises(ImageInputError, match=r"^image 2 \(\d+ bytes starting") as refused:
        read_image(declared_png(8000, 8000), index=2, limits=PACKAGE_LIMITS)
    assert refused.value.reason == "too many pixels (8000×8000 > 40000000)"


def sixteen_bit(image_format: str, byte_order: str) -> bytes:
    return encode(Image.fromarray(GRADIENT.astype(f"{byte_order}u2")), image_format)


@pytest.mark.parametrize(
    ("image_format", "byte_order"),
    [("PNG", "<"), ("TIFF", "<"), ("TIFF", ">")],
    ids=["png", "tiff-I;16", "tiff-I;16B"],
)
def test_a_16_bit_image_gives_the_same_tensor_at_ingest_and_when_served(
    image_format: str, byte_order: str
) -> None:
    data = sixteen_bit(image_format, byte_order)
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")

    ingested = normalise_image(data, INGEST).image
    served = read_image(data, limits=PACKAGE_LIMITS)

    expected = np.round(GRADIENT / 257).astype(np.uint8)  # 65535 → 255, scaled, not clipped
    np.testing.assert_array_equal(np.asarray(served), np.repeat(expected[..., None], 3, axis=2))
    np.testing.assert_array_equal(np.asarray(ingested), np.asarray(served))
    spec = preprocessing_spec(PREPROCESSING, {"input_dtype": "float32"}, PACKAGE_LIMITS)
    np.testing.assert_array_equal(preprocess(ingested, spec), preprocess(served, spec))


def test_a_16_bit_image_is_scaled_by_its_depth_even_when_dark() -> None:
    """The mode declares 16 bits: a value of 200 is nearly black, not 8-bit grey 200."""
    dark = encode(Image.fromarray(np.full((4, 4), 200, dtype=np.uint16)))
    assert decode_image(dark, PACKAGE_LIMITS).image.getpixel((0, 0)) == (1, 1, 1)


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    return encode(image, transparency=0)


@pytest.mark.parametrize(
    "data",
    [
        encode(Image.new("RGBA", (6, 4), (200, 10, 10, 100))),
        encode(Image.new("LA", (6, 4), (90, 30))),
        _palette_with_transparency(),
        encode(Image.new("CMYK", (6, 4), (10, 200, 30, 5)), "JPEG"),
        encode(Image.new("L", (6, 4), 77)),
        encode(Image.new("1", (6, 4), 1)),
        encode(Image.fromarray(np.full((4, 6), 70_000, dtype=np.int32)), "TIFF"),
        encode(Image.fromarray(np.full((4, 6), 1000.5, dtype=np.float32)), "TIFF"),
    ],
    ids=["RGBA", "LA", "P+transparency", "CMYK", "L", "1", "I", "F"],
)
def test_every_mode_decodes_alike_at_ingest_and_when_served(data: bytes) -> None:
    ingested = normalise_image(data, INGEST).image
    served = read_image(data, limits=PACKAGE_LIMITS)
    assert served.mode == ingested.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(ingested), np.asarray(served))


def test_an_image_with_a_side_below_the_minimum_is_refused_and_old_packages_have_none() -> None:
    limits = ImageLimits(max_pixels=10**6, max_aspect_ratio=20, min_side=64)
    assert limits.violation(63, 100) == "too small (63×100, a side below 64 pixels)"
    assert limits.violation(64, 100) is None
    written_before_the_rule = {"max_pixels": 10**6, "max_aspect_ratio": 20}
    assert ImageLimits(**written_before_the_rule).violation(1, 1) is None
    with pytest.raises(ImageRejected, match="too small"):
        decode_image(encode(Image.new("RGB", (8, 8))), limits)


def test_more_bytes_than_the_limit_are_refused_unopened_and_old_packages_have_no_limit(
    headers_only: None,
) -> None:
    data = declared_png(8, 8)
    limits = ImageLimits(max_pixels=10**6, max_aspect_ratio=20, max_bytes=len(data) - 1)
    with pytest.raises(ImageOverLimits) as refused:
        decode_image(data, limits)
    assert refused.value.reason == f"file too large ({len(data)} bytes > {len(data) - 1})"
    assert refused.value.size is None
    assert ImageLimits(max_pixels=10**6, max_aspect_ratio=20).size_violation(10**12) is None
    assert dataclasses.replace(limits, max_bytes=len(data)).size_violation(len(data)) is None
