"""Decoding and normalising images, and the content-addressed image store."""

import io
import subprocess
import sys

import pytest
from PIL import Image

from prodcls_pipeline.data.images import (
    DecodedImage,
    ImageRejected,
    ImageStore,
    decode_image,
    sha256_bytes,
)

MAX_SIDE = 64
MAX_PIXELS = 1_000_000
EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6


def encode(image: Image.Image, image_format: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **save_args)
    return buffer.getvalue()


def decode(data: bytes) -> DecodedImage:
    return decode_image(data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS)


def test_sha256_bytes_is_hex_digest_of_the_bytes():
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_bytes(b"abc") == expected


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
    assert decoded.image.size == (MAX_SIDE, MAX_SIDE // 2)


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
        (b"just some text, not a picture", "not an image"),
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


def _decoded(color=(255, 0, 0), size=(16, 12)) -> DecodedImage:
    return DecodedImage(Image.new("RGB", size, color), width=32, height=24, format="PNG")


def test_store_keeps_copies_and_records(tmp_path):
    store = ImageStore(tmp_path)
    store.put("ab" * 32, _decoded(), quality=90)
    store.put("cd" * 32, None, reason="not an image")
    assert "ab" * 32 in store and "cd" * 32 in store and "ef" * 32 not in store
    assert store.path("ab" * 32) == tmp_path / "ab" / f"{'ab' * 32}.jpg"
    assert store.record("ab" * 32) == {
        "width": 32,
        "height": 24,
        "format": "PNG",
        "status": "ok",
        "quarantine_reason": "",
    }
    assert store.record("cd" * 32)["status"] == "quarantined"
    assert not store.path("cd" * 32).exists()
    opened = store.open("ab" * 32)
    assert opened.mode == "RGB" and opened.size == (16, 12)
    with pytest.raises(KeyError):
        store.open("cd" * 32)


def test_store_put_is_idempotent_and_never_rewrites(tmp_path):
    store = ImageStore(tmp_path)
    sha = "12" * 32
    store.put(sha, _decoded((255, 0, 0)))
    written = store.path(sha).stat().st_mtime_ns, store.path(sha).read_bytes()
    store.put(sha, _decoded((0, 0, 255)))
    assert (store.path(sha).stat().st_mtime_ns, store.path(sha).read_bytes()) == written
    assert len(store) == 1


def test_store_writes_original_jpeg_bytes_when_already_normal(tmp_path):
    data = encode(Image.new("RGB", (20, 10), (9, 9, 9)), "JPEG", quality=70)
    store = ImageStore(tmp_path)
    store.put(sha256_bytes(data), decode(data))
    assert store.path(sha256_bytes(data)).read_bytes() == data


def test_quarantine_record_needs_a_reason(tmp_path):
    with pytest.raises(ValueError, match="reason"):
        ImageStore(tmp_path).put("00" * 32, None)


def test_store_records_persist_across_processes_after_flush(tmp_path):
    store = ImageStore(tmp_path)
    store.put("ab" * 32, _decoded())
    store.put("cd" * 32, None, reason="truncated or corrupt image data")
    assert "ab" * 32 not in ImageStore(tmp_path)  # not visible before flush
    store.flush()
    script = (
        "import sys; from pathlib import Path; from prodcls_pipeline.data.images import ImageStore;"
        "s = ImageStore(Path(sys.argv[1])); print(len(s), s.record('cd' * 32)['quarantine_reason'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "2 truncated or corrupt image data"
    assert not list(tmp_path.glob("**/*.tmp"))
