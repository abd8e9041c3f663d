"""Decode, normalise and hash product photos; keep normalised copies in a content-addressed store.

The identity of an image is the sha256 of its original bytes. The store keeps one normalised RGB
JPEG per identity plus a decode record (size, format, status) of the original, so an image that
was seen once, good or bad, is never decoded again.
"""

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_WHITE = (255, 255, 255)
_SIXTEEN_BIT_MAX = 65535
_EXIF_ORIENTATION = 0x0112
_INDEX_FILE = "index.jsonl"
_RECORD_FIELDS = ("width", "height", "format", "status", "quarantine_reason")


class ImageRejected(Exception):
    """A file that cannot become a training image; the message is the human-readable reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    """A normalised RGB image and the size and format of the original it came from.

    `jpeg` holds the original bytes when they already are the normalised image (an upright RGB
    JPEG within `max_side`): storing them as they are avoids a second lossy compression.
    """

    image: Image.Image
    width: int
    height: int
    format: str
    jpeg: bytes | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hash a file without holding it in memory (for files too large to decode)."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def decode_image(data: bytes, max_side: int, max_pixels: int) -> DecodedImage:
    """Decode `data` fully, upright and as RGB, downscaled so its longer side is ≤ `max_side`.

    Raises `ImageRejected` with the reason when the bytes are not a usable image.
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    image = _open(data, max_pixels)
    source_format = image.format or ""
    try:
        image.load()
        upright = image.getexif().get(_EXIF_ORIENTATION, 1) == 1
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRejected(f"truncated or corrupt image data ({error})") from error
    width, height = image.size
    already_normal = (
        source_format == "JPEG"
        and image.mode == "RGB"
        and upright
        and max(width, height) <= max_side
    )
    rgb = _downscale(_to_rgb(image), max_side)
    return DecodedImage(
        image=rgb,
        width=width,
        height=height,
        format=source_format,
        jpeg=data if already_normal else None,
    )


def _open(data: bytes, max_pixels: int) -> Image.Image:
    # The pixel budget is checked from the header, before any pixel is decoded: that is what
    # stops a decompression bomb. PIL's own global limit is left untouched.
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise ImageRejected("not an image (unrecognised file format)") from error
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"too many pixels ({error})") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRejected(f"truncated or corrupt image data ({error})") from error
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageRejected(f"empty image ({width}×{height} pixels)")
    if width * height > max_pixels:
        raise ImageRejected(f"too many pixels ({width}×{height} > {max_pixels})")
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit and integer greyscale: PIL's convert clips at 255, so scale the range down first.
        pixels = np.asarray(image, dtype=np.float64)
        scale = 255 / _SIXTEEN_BIT_MAX if pixels.max(initial=0) > 255 else 1.0
        grey = np.clip(pixels * scale, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _downscale(image: Image.Image, max_side: int) -> Image.Image:
    longer = max(image.size)
    if longer <= max_side:
        return image
    scale = max_side / longer
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class ImageStore:
    """Normalised JPEG copies keyed by sha256, with a decode record of every original seen.

    Layout: `root/<first two hex>/<sha256>.jpg` and `root/index.jsonl` (one record per line,
    sorted by sha256). Records added with `put` are persisted by `flush`. Nothing is overwritten
    or deleted, so the store only grows.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._records = self._read_index()
        self._unflushed = False

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._records

    def __len__(self) -> int:
        return len(self._records)

    def record(self, sha256: str) -> dict | None:
        """The original's width, height, format, status and quarantine_reason, if seen before."""
        record = self._records.get(sha256)
        return dict(record) if record is not None else None

    def put(
        self, sha256: str, decoded: DecodedImage | None, reason: str = "", quality: int = 95
    ) -> None:
        """Store the normalised copy of `decoded`, or only a quarantine record with `reason`."""
        if sha256 in self._records:
            return
        if decoded is None:
            if not reason:
                raise ValueError("A quarantine record needs a reason")
            record = {"width": 0, "height": 0, "format": "", "status": "quarantined"}
            self._records[sha256] = {**record, "quarantine_reason": reason}
        else:
            target = self.path(sha256)
            if not target.exists():
                _atomic_write(target, decoded.jpeg or _encode_jpeg(decoded.image, quality))
            self._records[sha256] = {
                "width": decoded.width,
                "height": decoded.height,
                "format": decoded.format,
                "status": "ok",
                "quarantine_reason": "",
            }
        self._unflushed = True

    def open(self, sha256: str) -> Image.Image:
        """The normalised copy as a fully loaded RGB image."""
        record = self._records.get(sha256)
        if record is None or record["status"] != "ok":
            raise KeyError(f"No normalised image for {sha256} in {self.root}")
        with Image.open(self.path(sha256)) as image:
            return image.convert("RGB")

    def flush(self) -> None:
        """Persist the records so other processes see them."""
        if not self._unflushed:
            return
        lines = (
            json.dumps({"sha256": sha256, **self._records[sha256]}, ensure_ascii=False)
            for sha256 in sorted(self._records)
        )
        _atomic_write(self.root / _INDEX_FILE, ("\n".join(lines) + "\n").encode())
        self._unflushed = False

    def _read_index(self) -> dict[str, dict]:
        index = self.root / _INDEX_FILE
        if not index.is_file():
            return {}
        records = {}
        for line in index.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                records[entry["sha256"]] = {field: entry[field] for field in _RECORD_FIELDS}
        return records
