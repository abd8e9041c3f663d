"""Normalising images, and the content-addressed image store whose decisions depend on exactly
the ingest settings that determine them."""

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from prodcls_pipeline.core.digests import sha256_bytes
from prodcls_pipeline.data import images
from prodcls_pipeline.data.images import (
    ImageStore,
    IngestSettings,
    NormalisedImage,
    normalise_image,
)
from prodcls_serving.common.decoding import ImageRejected

SETTINGS = IngestSettings(
    max_side=64,
    normalised_quality=95,
    max_source_bytes=10**6,
    max_source_pixels=1_000_000,
    max_aspect_ratio=20,
    min_source_side=1,
)
EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6


def encode(image: Image.Image, image_format: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **save_args)
    return buffer.getvalue()


def decode(data: bytes) -> NormalisedImage:
    return normalise_image(data, SETTINGS)


def test_settings_are_read_from_the_ingest_section_and_give_the_decoder_limits():
    params = dataclasses.asdict(SETTINGS)
    assert IngestSettings.from_params(params) == SETTINGS
    assert SETTINGS.limits.max_pixels == 1_000_000 and SETTINGS.limits.max_aspect_ratio == 20.0
    with pytest.raises(ValueError, match="ingest: unknown max_pixel"):
        IngestSettings.from_params({**params, "max_pixel": 5})


def test_good_jpeg_keeps_original_size_and_format():
    decoded = decode(encode(Image.new("RGB", (40, 30), (10, 200, 10)), "JPEG"))
    assert (decoded.width, decoded.height, decoded.format) == (40, 30, "JPEG")
    assert decoded.image.mode == "RGB" and decoded.image.size == (40, 30)


def test_upright_rgb_jpeg_within_max_side_keeps_its_original_bytes():
    data = encode(Image.new("RGB", (40, 30), (10, 200, 10)), "JPEG")
    assert decode(data).jpeg == data
    assert decode(encode(Image.new("RGB", (128, 30)), "JPEG")).jpeg is None
    assert decode(encode(Image.new("RGB", (40, 30)), "PNG")).jpeg is None


def test_large_image_is_downscaled_to_max_side_keeping_aspect_ratio():
    decoded = decode(encode(Image.new("RGB", (256, 128), (1, 2, 3))))
    assert (decoded.width, decoded.height) == (256, 128)
    assert decoded.image.size == (SETTINGS.max_side, SETTINGS.max_side // 2)


def test_exif_orientation_is_applied_and_reported_size_is_upright():
    image = Image.new("RGB", (60, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 30, 20))  # left half blue
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATED_90_CW
    decoded = decode(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert (decoded.width, decoded.height) == (20, 60)
    assert decoded.jpeg is None
    top = decoded.image.getpixel((10, 5))
    bottom = decoded.image.getpixel((10, 55))
    assert top[2] > 200 and top[0] < 60  # the blue half is on top after turning it upright
    assert bottom[0] > 200 and bottom[2] < 60


def test_transparent_rgba_is_composited_on_white():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    decoded = decode(encode(image))
    assert decoded.format == "PNG"
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255)
    assert decoded.image.getpixel((0, 0)) == (255, 0, 0)


def test_palette_with_transparency_is_composited_on_white():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    decoded = decode(encode(image, "PNG", transparency=0))
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.image.getpixel((1, 1)) == (0, 255, 0)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    decoded = decode(encode(Image.new("I;16", (4, 4), 32768)))
    assert decoded.image.getpixel((0, 0)) == (128, 128, 128)


def test_cmyk_becomes_rgb():
    decoded = decode(encode(Image.new("CMYK", (4, 4), (0, 0, 0, 0)), "JPEG"))
    assert decoded.image.mode == "RGB"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"just some text, not a picture", "not a decodable image"),
        (b"\xff\xd8\xff\xe0 this is not a complete jpeg", "corrupt"),
    ],
)
def test_bad_bytes_are_rejected_with_a_reason(data, reason):
    with pytest.raises(ImageRejected, match=reason):
        decode(data)


def test_truncated_jpeg_is_rejected():
    data = encode(Image.effect_noise((200, 200), 60).convert("RGB"), "JPEG")
    with pytest.raises(ImageRejected, match="truncated or corrupt"):
        decode(data[: len(data) // 2])


def test_too_many_pixels_is_rejected_before_decoding():
    data = encode(Image.new("L", (2000, 1000)))
    with pytest.raises(ImageRejected, match=r"too many pixels \(2000×1000 > 1000000\)"):
        decode(data)


def test_truncated_images_stay_disallowed_globally():
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# Images whose decisions depend on different settings.
SMALL_PNG = encode(Image.new("RGB", (16, 12), (255, 0, 0)))  # re-encoded, within max_side
SMALL_JPEG = encode(Image.new("RGB", (20, 10), (9, 9, 9)), "JPEG", quality=70)  # kept as it is
LARGE_PNG = encode(Image.new("RGB", (128, 32), (0, 0, 255)))  # downscaled to max_side
HUGE_PNG = encode(Image.new("L", (1200, 1000)))  # beyond max_source_pixels
LONG_PNG = encode(Image.new("L", (500, 10)))  # beyond max_aspect_ratio
NOT_AN_IMAGE = b"just some text"
EVERY_KIND = (SMALL_PNG, SMALL_JPEG, LARGE_PNG, HUGE_PNG, LONG_PNG, NOT_AN_IMAGE)


def filled_store(root: Path) -> ImageStore:
    store = ImageStore(root)
    for data in EVERY_KIND:
        store.put(sha256_bytes(data), data, SETTINGS)
    return store


def needs_decoding(store: ImageStore, settings: IngestSettings) -> set[bytes]:
    return {data for data in EVERY_KIND if store.decision(sha256_bytes(data), settings) is None}


def test_store_keeps_copies_and_decisions(tmp_path):
    store = filled_store(tmp_path)
    sha = sha256_bytes(SMALL_PNG)
    assert sha in store and sha256_bytes(NOT_AN_IMAGE) in store and "ef" * 32 not in store
    assert store.path(sha) == tmp_path / sha[:2] / f"{sha}.jpg"
    assert store.decision(sha, SETTINGS) == {
        "width": 16,
        "height": 12,
        "format": "PNG",
        "status": "ok",
        "quarantine_reason": "",
    }
    assert store.decision(sha256_bytes(HUGE_PNG), SETTINGS) == {
        "width": 0,
        "height": 0,
        "format": "",
        "status": "quarantined",
        "quarantine_reason": "too many pixels (1200×1000 > 1000000)",
    }
    refused = store.decision(sha256_bytes(NOT_AN_IMAGE), SETTINGS)
    assert refused["quarantine_reason"].startswith("not a decodable image")
    assert not store.path(sha256_bytes(NOT_AN_IMAGE)).exists()
    opened = store.open(sha)
    assert opened.mode == "RGB" and opened.size == (16, 12)
    with pytest.raises(KeyError):
        store.open(sha256_bytes(HUGE_PNG))


def test_store_put_is_idempotent_and_never_rewrites(tmp_path):
    store = ImageStore(tmp_path)
    sha = sha256_bytes(SMALL_PNG)
    store.put(sha, SMALL_PNG, SETTINGS)
    written = store.path(sha).stat().st_mtime_ns, store.path(sha).read_bytes()
    store.put(sha, encode(Image.new("RGB", (16, 12), (0, 0, 255))), SETTINGS)
    assert (store.path(sha).stat().st_mtime_ns, store.path(sha).read_bytes()) == written
    assert len(store) == 1


def test_store_writes_original_jpeg_bytes_when_already_normal(tmp_path):
    store = ImageStore(tmp_path)
    store.put(sha256_bytes(SMALL_JPEG), SMALL_JPEG, SETTINGS)
    assert store.path(sha256_bytes(SMALL_JPEG)).read_bytes() == SMALL_JPEG


def test_every_decision_holds_under_the_settings_that_made_it(tmp_path):
    assert needs_decoding(filled_store(tmp_path), SETTINGS) == set()


@pytest.mark.parametrize(
    ("change", "affected"),
    [
        ({"max_source_pixels": 1_200_000}, {HUGE_PNG}),
        ({"max_aspect_ratio": 50}, {LONG_PNG}),
        ({"max_side": 32}, {LARGE_PNG}),  # the small ones still fit
        ({"max_side": 16}, {LARGE_PNG, SMALL_JPEG}),  # SMALL_PNG's 16 px still fits
        ({"max_side": 256}, {LARGE_PNG}),  # no longer downscaled
        ({"normalised_quality": 80}, {SMALL_PNG, LARGE_PNG}),  # the kept JPEG has no quality
        ({"max_source_bytes": 10}, set()),  # checked on the file, never stored
    ],
    ids=["pixels", "aspect", "max_side-32", "max_side-16", "max_side-256", "quality", "bytes"],
)
def test_a_changed_setting_re_decodes_exactly_what_it_affects(tmp_path, change, affected):
    store = filled_store(tmp_path)
    assert needs_decoding(store, dataclasses.replace(SETTINGS, **change)) == affected


def test_a_lowered_limit_quarantines_without_decoding(tmp_path, monkeypatch):
    store = filled_store(tmp_path)
    monkeypatch.setattr(images, "decode_image", lambda *args: pytest.fail("decoded again"))
    fewer_pixels = dataclasses.replace(SETTINGS, max_source_pixels=150)
    squarer = dataclasses.replace(SETTINGS, max_aspect_ratio=1.5)
    assert store.decision(sha256_bytes(SMALL_PNG), fewer_pixels)["quarantine_reason"] == (
        "too many pixels (16×12 > 150)"
    )
    assert store.decision(sha256_bytes(SMALL_JPEG), squarer)["quarantine_reason"] == (
        "aspect ratio too extreme (20×10, 2.0:1 > 1.5:1)"
    )
    assert store.put(sha256_bytes(LARGE_PNG), LARGE_PNG, squarer)["status"] == "quarantined"
    assert store.decision(sha256_bytes(LARGE_PNG), SETTINGS)["status"] == "ok"


def test_a_re_decode_replaces_the_copy_and_its_record(tmp_path):
    store = filled_store(tmp_path)
    sha = sha256_bytes(LARGE_PNG)
    larger = dataclasses.replace(SETTINGS, max_side=256)
    assert store.put(sha, LARGE_PNG, larger)["status"] == "ok"
    assert store.open(sha).size == (128, 32)
    assert store.decision(sha, larger) is not None and store.decision(sha, SETTINGS) is None


def test_a_released_image_is_decoded_and_stored(tmp_path):
    store = filled_store(tmp_path)
    sha = sha256_bytes(HUGE_PNG)
    generous = dataclasses.replace(SETTINGS, max_source_pixels=1_200_000)
    assert store.put(sha, HUGE_PNG, generous) == {
        "width": 1200,
        "height": 1000,
        "format": "PNG",
        "status": "ok",
        "quarantine_reason": "",
    }
    assert store.open(sha).size == (64, 53)


def test_records_of_the_older_layout_are_decoded_again(tmp_path):
    old = {"width": 16, "height": 12, "format": "PNG", "status": "ok", "quarantine_reason": ""}
    (tmp_path / "index.jsonl").write_text(json.dumps({"sha256": "ab" * 32, **old}) + "\n")
    store = ImageStore(tmp_path)
    assert "ab" * 32 not in store and store.decision("ab" * 32, SETTINGS) is None


def test_store_records_persist_across_processes_after_flush(tmp_path):
    store = filled_store(tmp_path)
    assert sha256_bytes(SMALL_PNG) not in ImageStore(tmp_path)  # not visible before flush
    store.flush()
    script = (
        "import sys; from pathlib import Path; from prodcls_pipeline.data.images import ImageStore;"
        "s = ImageStore(Path(sys.argv[1])); print(len(s))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == str(len(EVERY_KIND))
    assert ImageStore(tmp_path).decision(sha256_bytes(HUGE_PNG), SETTINGS) == store.decision(
        sha256_bytes(HUGE_PNG), SETTINGS
    )
    assert not list(tmp_path.glob("**/*.tmp"))


def test_the_store_decodes_with_the_shared_decoder(tmp_path, monkeypatch):
    decoded = []
    real_decode = images.decode_image
    monkeypatch.setattr(
        images,
        "decode_image",
        lambda data, limits: decoded.append(data) or real_decode(data, limits),
    )
    filled_store(tmp_path)
    assert decoded == list(EVERY_KIND)
