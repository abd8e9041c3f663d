"""Normalise and hash product photos; keep the normalised copies in a content-addressed store.

The identity of an image is the sha256 of its original bytes. Decoding is serving's decoder
(`prodcls_serving.common.decoding`), so a photo is converted and limited the same way when it is
ingested and when it is served.

The store keeps one normalised RGB JPEG per identity and a record of what decoding found. Each
decision is derived from that record and the run's `IngestSettings`, so it depends on exactly the
settings that can change it: a quarantine for size on the limits and the declared size; a
normalised copy on `max_side` only where the source exceeds it, on `normalised_quality` unless
the copy is the source's own bytes; any other rejection on nothing. A changed setting re-decodes
the images it affects and no other.
"""

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from prodcls_pipeline.core.files import atomic_write
from prodcls_pipeline.core.rules import Rule
from prodcls_pipeline.core.schema import OK, QUARANTINED
from prodcls_serving.common.decoding import (
    ImageLimits,
    ImageOverLimits,
    ImageRejected,
    decode_image,
)

_INDEX_FILE = "index.jsonl"
_RECORD_FIELDS = ("width", "height", "format", "rejection", "copy")


@dataclass(frozen=True)
class IngestSettings(Rule):
    """How ingest admits and normalises images (params.yaml `ingest:`)."""

    params_section: ClassVar[str] = "ingest"

    max_side: int
    normalised_quality: int
    max_source_bytes: int
    max_source_pixels: int
    max_aspect_ratio: float
    min_source_side: int

    @property
    def limits(self) -> ImageLimits:
        """The decoder's limits: those the served model holds its images to as well."""
        return ImageLimits(
            max_pixels=self.max_source_pixels,
            max_aspect_ratio=self.max_aspect_ratio,
            min_side=self.min_source_side,
            max_bytes=self.max_source_bytes,
        )


@dataclass(frozen=True)
class NormalisedImage:
    """An upright RGB image downscaled to `max_side`, and the size and format of its original.

    `jpeg` holds the original bytes when they already are the normalised image (an upright RGB
    JPEG within `max_side`): storing them as they are avoids a second lossy compression.
    """

    image: Image.Image
    width: int
    height: int
    format: str
    jpeg: bytes | None = None


def normalise_image(data: bytes, settings: IngestSettings) -> NormalisedImage:
    """Decode `data` within the settings' limits, upright and as RGB, downscaled so its longer
    side is at most `max_side`. Raises `ImageRejected` with the reason for an unusable file."""
    decoded = decode_image(data, settings.limits)
    width, height = decoded.image.size
    keep_source = (
        decoded.format == "JPEG" and decoded.unchanged and max(width, height) <= settings.max_side
    )
    return NormalisedImage(
        image=_downscale(decoded.image, settings.max_side),
        width=width,
        height=height,
        format=decoded.format,
        jpeg=data if keep_source else None,
    )


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


class ImageStore:
    """Normalised JPEG copies keyed by sha256, with a record of what decoding each original found.

    Layout: `root/<first two hex>/<sha256>.jpg` and `root/index.jsonl` (one record per line,
    sorted by sha256). A record holds the original's size (declared by its header when it was
    refused) and format, a rejection no setting can lift, and what its copy depends on. Records
    added with `put` are persisted by `flush`. A copy is rewritten only when a setting it depends
    on changed; nothing is deleted.
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

    def decision(self, sha256: str, settings: IngestSettings) -> dict[str, Any] | None:
        """The original's width, height, format, status and quarantine_reason under `settings`,
        or None when it must be decoded: never seen, or its copy was made under other settings.
        """
        record = self._records.get(sha256)
        if record is None:
            return None
        width, height = record["width"], record["height"]
        violation = settings.limits.violation(width, height) if width and height else None
        if violation:
            return quarantine_record(violation)
        if record["rejection"]:
            return quarantine_record(record["rejection"])
        if not _copy_holds(record, settings):
            return None
        return {
            "width": width,
            "height": height,
            "format": record["format"],
            "status": OK,
            "quarantine_reason": "",
        }

    def put(self, sha256: str, data: bytes, settings: IngestSettings) -> dict[str, Any]:
        """Decode `data` (the original of `sha256`) and keep its normalised copy, or the reason
        it was refused; returns its decision. A decision that still holds is kept as it is."""
        known = self.decision(sha256, settings)
        if known is not None:
            return known
        try:
            normalised = normalise_image(data, settings)
        except ImageOverLimits as refusal:
            width, height = refusal.size
            record = {"width": width, "height": height, "format": "", "rejection": ""}
            self._records[sha256] = {**record, "copy": None}
        except ImageRejected as rejection:
            width, height = rejection.size or (0, 0)
            record = {"width": width, "height": height, "format": "", "copy": None}
            self._records[sha256] = {**record, "rejection": rejection.reason}
        else:
            atomic_write(
                self.path(sha256),
                normalised.jpeg or _encode_jpeg(normalised.image, settings.normalised_quality),
            )
            self._records[sha256] = {
                "width": normalised.width,
                "height": normalised.height,
                "format": normalised.format,
                "rejection": "",
                "copy": _copy_dependencies(normalised, settings),
            }
        self._unflushed = True
        return self.decision(sha256, settings)

    def open(self, sha256: str) -> Image.Image:
        """The normalised copy as a fully loaded RGB image."""
        record = self._records.get(sha256)
        if record is None or record["copy"] is None:
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
        atomic_write(self.root / _INDEX_FILE, ("\n".join(lines) + "\n").encode())
        self._unflushed = False

    def _read_index(self) -> dict[str, dict]:
        index = self.root / _INDEX_FILE
        if not index.is_file():
            return {}
        records = {}
        for line in index.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line) if line.strip() else {}
            # A record of the older layout does not say which settings made it: decoded again.
            if all(field in entry for field in _RECORD_FIELDS):
                records[entry["sha256"]] = {field: entry[field] for field in _RECORD_FIELDS}
        return records


def _copy_dependencies(normalised: NormalisedImage, settings: IngestSettings) -> dict[str, Any]:
    """The settings a copy was made under that a change of would change it (None: none would)."""
    downscaled = max(normalised.width, normalised.height) > settings.max_side
    return {
        "max_side": settings.max_side if downscaled else None,
        "quality": None if normalised.jpeg else settings.normalised_quality,
    }


def _copy_holds(record: dict[str, Any], settings: IngestSettings) -> bool:
    """Whether the stored copy is the one `settings` would make."""
    copy = record["copy"]
    if copy is None:
        return False
    if copy["max_side"] is None:
        fits = max(record["width"], record["height"]) <= settings.max_side
    else:
        fits = copy["max_side"] == settings.max_side
    return fits and copy["quality"] in (None, settings.normalised_quality)


def quarantine_record(reason: str) -> dict[str, Any]:
    """The decision for a file that cannot become a training image, and why."""
    return {
        "width": 0,
        "height": 0,
        "format": "",
        "status": QUARANTINED,
        "quarantine_reason": reason,
    }
