"""The one image decoder: bytes → an upright RGB image, for ingest and serving alike.

The limits are checked from the header before any pixel is decoded, converted or resized:
`Image.open` reads only the header, so a small file that declares a huge image is refused
without allocating it. Pillow's own decompression-bomb limit stays in force as well; it is never
loosened here.
"""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

WHITE = (255, 255, 255)
_EXIF_ORIENTATION = 0x0112
_UPRIGHT = 1
_EIGHT_BIT_MAX = 255
_SIXTEEN_BIT_MAX = 65535
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
# What Pillow raises on bytes it cannot decode.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


class ImageRejected(ValueError):
    """Bytes that cannot become an image. `reason` says why, for a person; `size` is the size the
    header declares, when the header could be read."""

    def __init__(self, reason: str, size: tuple[int, int] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.size = size


class ImageOverLimits(ImageRejected):
    """An image of more bytes, or whose header declares more pixels or a more extreme aspect
    ratio, than the limits allow: refused before decoding, and refused no longer once the limits
    admit its size."""


@dataclass(frozen=True)
class ImageLimits:
    """The images accepted: at most a pixel count, a longer-to-shorter side ratio and a number
    of encoded bytes, at least a shorter side (a package written before a rule has none: a
    shorter side of 1, any number of bytes)."""

    max_pixels: int
    max_aspect_ratio: float
    min_side: int = 1
    max_bytes: int | None = None

    def size_violation(self, byte_count: int) -> str | None:
        """Why an encoded image of this many bytes is refused, or None when it is within."""
        if self.max_bytes is not None and byte_count > self.max_bytes:
            return f"file too large ({byte_count} bytes > {self.max_bytes})"
        return None

    def violation(self, width: int, height: int) -> str | None:
        """Why an image of this size is refused, or None when it is within the limits."""
        if width * height > self.max_pixels:
            return f"too many pixels ({width}×{height} > {self.max_pixels})"
        if min(width, height) < self.min_side:
            return f"too small ({width}×{height}, a side below {self.min_side} pixels)"
        ratio = max(width, height) / min(width, height)
        if ratio > self.max_aspect_ratio:
            return (
                f"aspect ratio too extreme ({width}×{height}, "
                f"{ratio:.1f}:1 > {self.max_aspect_ratio:g}:1)"
            )
        return None


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image, the format of its source, and whether its pixels are the source's
    own (an RGB image with no orientation to apply), so a caller may keep the source bytes."""

    image: Image.Image
    format: str
    unchanged: bool


def decode_image(data: bytes, limits: ImageLimits | None) -> DecodedImage:
    """Decode `data` fully, turned upright and converted to RGB (transparency on white).

    Raises `ImageRejected` with the reason when the bytes are not a usable image, and its
    subclass `ImageOverLimits` when the header declares a size beyond `limits`. Without limits
    only Pillow's own decompression-bomb limit applies.
    """
    image = open_image(data, limits)
    source_format = image.format or ""
    try:
        image.load()
        upright = image.getexif().get(_EXIF_ORIENTATION, _UPRIGHT) == _UPRIGHT
        image = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as error:
        raise ImageRejected(f"truncated or corrupt image data ({error})", image.size) from error
    unchanged = upright and image.mode == "RGB"
    return DecodedImage(image=to_rgb(image), format=source_format, unchanged=unchanged)


def open_image(data: bytes, limits: ImageLimits | None) -> Image.Image:
    """The image in `data` with only its header read, its size checked against `limits`."""
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    too_large = limits.size_violation(len(data)) if limits else None
    if too_large:
        raise ImageOverLimits(too_large)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise ImageRejected("not a decodable image (unrecognised file format)") from error
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"too many pixels ({error})") from error
    except _DECODE_ERRORS as error:
        raise ImageRejected(f"truncated or corrupt image data ({error})") from error
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageRejected(f"empty image ({width}×{height} pixels)", image.size)
    violation = limits.violation(width, height) if limits else None
    if violation:
        raise ImageOverLimits(violation, image.size)
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: 16-bit and integer greyscale scaled (Pillow's convert would clip them at 255,
    to white), transparent pixels composited on white, every other mode converted."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _grey_to_rgb(image)
    try:
        if image.mode in _ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, WHITE)
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return image.convert("RGB")
    except ValueError as error:
        raise ImageRejected(
            f"unsupported colour mode {image.mode} ({error})", image.size
        ) from error


def _grey_to_rgb(image: Image.Image) -> Image.Image:
    """A 16-bit mode (I;16, I;16B, ...) declares its range; 32-bit integer and float modes do
    not, so their values tell: beyond 255 they are taken as 16-bit, else as 8-bit."""
    pixels = np.asarray(image, dtype=np.float64)
    sixteen_bit = image.mode.startswith("I;16") or pixels.max(initial=0) > _EIGHT_BIT_MAX
    scale = _EIGHT_BIT_MAX / _SIXTEEN_BIT_MAX if sixteen_bit else 1.0
    grey = np.clip(pixels * scale, 0, _EIGHT_BIT_MAX).round().astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")
