"""The items of a request: a path, raw bytes, base64 or a base64 data URI, each read into an
upright RGB image by the one decoder, or refused with a message naming the item. Paths are for
in-process callers only: what a client sends a served model passes `request_bytes` first."""

import base64
import os
from pathlib import Path

from PIL import Image

from prodcls_serving.common.decoding import ImageLimits, ImageRejected, decode_image

ImageItem = str | bytes | os.PathLike
_DATA_URI_PREFIX = "data:"
_BASE64_MARKER = ";base64,"
# A str longer than this is no path (Linux caps a path at 4096 bytes): only base64 is tried.
_MAX_PATH_CHARS = 4096
# A long item is shown by its start and its end: the end of a path is its file name.
_PREVIEW_HEAD, _PREVIEW_TAIL = 40, 24


class ImageInputError(ValueError):
    """An input item that is not a usable image; the message names the item and the reason."""

    def __init__(self, item: object, index: int, reason: str) -> None:
        super().__init__(f"image {index} ({_preview(item)}): {reason}")
        self.reason = reason


def read_image(item: ImageItem, index: int = 0, limits: ImageLimits | None = None) -> Image.Image:
    """Decode a path, raw bytes, base64 or a base64 data URI into an upright RGB image.

    `index` is the item's position in the request, so the error can say which one is bad.
    `limits` are a model package's; a model always applies them, and without them (a local file
    checked before any model is loaded) only Pillow's own decompression-bomb limit applies.
    """
    data = _image_bytes(item, index)
    try:
        return decode_image(data, limits).image
    except ImageRejected as rejection:
        raise ImageInputError(item, index, rejection.reason) from rejection


def request_bytes(item: object, index: int = 0) -> bytes:
    """The image bytes a client sent: raw bytes, base64, or a base64 data URI. A served model
    runs on someone else's machine, so a path is refused, never read: the client sends the
    image itself."""
    return _image_bytes(item, index, read_paths=False)


# What a refused path (or any item but bytes and str) is told when paths are not read.
_NO_FILES = "the served model reads no files, send the image's bytes"


def _image_bytes(item: object, index: int, read_paths: bool = True) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if isinstance(item, os.PathLike) and read_paths:
        return _read_file(Path(item), item, index)
    if isinstance(item, str):
        return _str_bytes(item, index, read_paths)
    if read_paths:
        reason = f"expected a path, bytes or base64 str, got {type(item).__name__}"
    else:
        reason = f"expected bytes or a base64 str, got {type(item).__name__}: {_NO_FILES}"
    raise ImageInputError(item, index, reason)


def _str_bytes(text: str, index: int, read_paths: bool) -> bytes:
    """The decoded base64 (with or without a data URI prefix), or, when `read_paths`, an
    existing file's bytes."""
    if text.startswith(_DATA_URI_PREFIX):
        _, marker, payload = text.partition(_BASE64_MARKER)
        data = _decode_base64(payload) if marker else None
        if data is None:
            raise ImageInputError(text, index, "a data URI, but not one of base64 data")
        return data
    if read_paths and _is_file(text):
        return _read_file(Path(text), text, index)
    data = _decode_base64(text)
    if data is None:
        reason = (
            "neither an existing file nor base64"
            if read_paths
            else f"not base64 or a base64 data URI: {_NO_FILES}"
        )
        raise ImageInputError(text, index, reason)
    return data


def _read_file(path: Path, item: ImageItem, index: int) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageInputError(item, index, f"cannot read the file ({error.strerror})") from error


def _decode_base64(text: str) -> bytes | None:
    """The bytes `text` encodes (line breaks allowed), or None when it is not base64."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        return None


def _is_file(text: str) -> bool:
    if not text or len(text) > _MAX_PATH_CHARS:
        return False
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL character
        return False


def _preview(item: object) -> str:
    """What an item looked like, short enough for an error message whatever its size."""
    if isinstance(item, bytes | bytearray | memoryview):
        data = bytes(item)
        return f"{len(data)} bytes starting {data[:16]!r}"
    text = str(item)
    if len(text) <= _PREVIEW_HEAD + _PREVIEW_TAIL:
        return repr(text)
    return f"{text[:_PREVIEW_HEAD]!r}...{text[-_PREVIEW_TAIL:]!r} ({len(text)} characters)"
