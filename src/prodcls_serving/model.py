"""The MLflow pyfunc flavour of a model package: images in, labels and probabilities out.

Serving needs numpy, pandas, Pillow, onnxruntime and mlflow only, never torch: the logged model
carries this package's source (`code_paths`), so a client with those five packages can load it,
and `mlflow models serve` answers a bad image with HTTP 400 and a message, not a stack trace.
"""

import base64
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import onnxruntime as ort
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PyFuncModel, PythonModelContext
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import Array, Object, Property
from PIL import Image, ImageOps, UnidentifiedImageError

from prodcls_serving.files import LABEL_MAP_FILE, MODEL_FILE, PREPROCESSING_FILE

PACKAGE_ARTIFACT = "package"
IMAGE_COLUMN = "image"
DEFAULT_TOP_K = 5
# Images decoded and scored at a time: bounds memory, while still batching the ONNX calls.
BATCH_SIZE = 32
# What the pyfunc model imports at serving time; MLflow adds mlflow itself.
SERVING_PACKAGES = ("onnxruntime", "pandas", "numpy", "pillow")
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", IMAGE_COLUMN)]),
    outputs=Schema(
        [
            ColSpec("string", "label"),
            ColSpec("string", "coarse_label"),
            ColSpec("double", "probability"),
            ColSpec(
                Array(Object([Property("label", "string"), Property("probability", "double")])),
                "top_k",
            ),
        ]
    ),
    params=ParamSchema([ParamSpec("top_k", "long", DEFAULT_TOP_K)]),
)

ImageItem = str | bytes | os.PathLike
_WHITE = (255, 255, 255)
_DATA_URI_PREFIX = "data:"
_BASE64_MARKER = ";base64,"
# A str longer than this is no path (Linux caps a path at 4096 bytes): only base64 is tried.
_MAX_PATH_CHARS = 4096
# A long item is shown by its start and its end: the end of a path is its file name.
_PREVIEW_HEAD, _PREVIEW_TAIL = 40, 24
# ORT logs every unused initialiser it prunes as a warning; errors still show.
_ORT_LOG_ERRORS_ONLY = 3


class ImageInputError(ValueError):
    """An input item that is not a decodable image; the message names the item and the reason."""

    def __init__(self, item: object, index: int, reason: str) -> None:
        super().__init__(f"image {index} ({_preview(item)}): {reason}")
        self.reason = reason


def read_image(item: ImageItem, index: int = 0) -> Image.Image:
    """Decode a path, raw bytes, base64 or a base64 data URI into an upright RGB image.

    `index` is the item's position in the request, so the error can say which one is bad.
    """
    data = _image_bytes(item, index)
    if not data:
        raise ImageInputError(item, index, "empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError as error:
        raise ImageInputError(item, index, "not a decodable image (unrecognised format)") from error
    except Image.DecompressionBombError as error:
        raise ImageInputError(item, index, f"too many pixels ({error})") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageInputError(item, index, f"truncated or corrupt image data ({error})") from error
    return _to_rgb(image)


def preprocess(image: Image.Image, spec: dict[str, Any]) -> np.ndarray:
    """An RGB image → the model's input [3, S, S], as preprocessing.json describes it.

    Sizes and crop offsets are computed as torchvision's Resize and CenterCrop compute them,
    so the result matches the training transform up to the resampling kernel.
    """
    shorter = int(spec["resize"]["shorter_side"])
    resample = Image.Resampling[spec["resize"]["interpolation"].upper()]
    image = image.resize(_resized_size(image.size, shorter), resample)
    crop = int(spec["center_crop"])
    left = int(round((image.width - crop) / 2.0))
    top = int(round((image.height - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1).astype(spec["input_dtype"])


@dataclass(frozen=True)
class ModelPackage:
    """A loaded package: the ONNX session, the labels and the preprocessing it expects."""

    session: ort.InferenceSession
    labels: list[str]
    label_to_coarse: dict[str, str]
    preprocessing: dict[str, Any]

    @classmethod
    def load(cls, directory: Path) -> "ModelPackage":
        label_map = json.loads((directory / LABEL_MAP_FILE).read_text(encoding="utf-8"))
        index_to_label = label_map["index_to_label"]
        return cls(
            session=_session(directory / MODEL_FILE),
            labels=[index_to_label[str(index)] for index in range(len(index_to_label))],
            label_to_coarse=label_map["label_to_coarse"],
            preprocessing=json.loads((directory / PREPROCESSING_FILE).read_text(encoding="utf-8")),
        )

    def predict(self, items: Sequence[ImageItem], top_k: int = DEFAULT_TOP_K) -> pd.DataFrame:
        """Columns label, coarse_label, probability (top-1 softmax) and top_k, one row per item.

        Raises `ImageInputError` for the first item that is not a decodable image.
        """
        probabilities = self.probabilities(items)
        # Slicing past the last class keeps them all: top_k is capped at the number of classes.
        ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        labels = [self.labels[row[0]] for row in ranked]
        return pd.DataFrame(
            {
                "label": labels,
                "coarse_label": [self.label_to_coarse.get(label, "") for label in labels],
                "probability": probabilities[np.arange(len(ranked)), ranked[:, 0]],
                "top_k": [
                    [{"label": self.labels[i], "probability": float(row[i])} for i in order]
                    for order, row in zip(ranked, probabilities, strict=True)
                ],
            }
        )

    def probabilities(self, items: Sequence[ImageItem]) -> np.ndarray:
        """Softmax of the logits [items, classes], BATCH_SIZE images per ONNX call."""
        batches = [
            self._batch_probabilities(items[start : start + BATCH_SIZE], start)
            for start in range(0, len(items), BATCH_SIZE)
        ]
        return np.concatenate(batches) if batches else np.empty((0, len(self.labels)))

    def _batch_probabilities(self, items: Sequence[ImageItem], start: int) -> np.ndarray:
        batch = np.stack(
            [
                preprocess(read_image(item, start + offset), self.preprocessing)
                for offset, item in enumerate(items)
            ]
        )
        spec = self.preprocessing
        (logits,) = self.session.run([spec["output_name"]], {spec["input_name"]: batch})
        return _softmax(logits.astype(np.float64))


class ProductClassifierModel(mlflow.pyfunc.PythonModel):
    """The pyfunc model: a column `image` of paths, base64 or data URIs → labels and scores."""

    def load_context(self, context: PythonModelContext) -> None:
        self.package = ModelPackage.load(Path(context.artifacts[PACKAGE_ARTIFACT]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """`model_input` is a DataFrame with an `image` column, or a list of items, or one item.

        Bad input raises INVALID_PARAMETER_VALUE, which the scoring server answers with 400.
        The DataFrame hint is one MLflow infers no schema from: the logged signature rules.
        """
        top_k = int((params or {}).get("top_k", DEFAULT_TOP_K))
        if top_k < 1:
            raise MlflowException(
                f"top_k must be at least 1, got {top_k}", error_code=INVALID_PARAMETER_VALUE
            )
        try:
            return self.package.predict(_image_items(model_input), top_k)
        except ImageInputError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from error


def log_pyfunc_model(package_dir: Path, name: str, input_example_images: list[bytes]) -> ModelInfo:
    """Log the package in `package_dir` as a pyfunc model into the active run.

    The package and this package's source travel with the model, and the requirements are
    pinned from the installed versions, so MLflow neither infers them nor reaches the network.
    A couple of small images make a sufficient input example: it is stored with the model.
    """
    if mlflow.active_run() is None:
        raise RuntimeError("log_pyfunc_model needs an active MLflow run to log the model into")
    example = [base64.b64encode(image).decode("ascii") for image in input_example_images]
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=ProductClassifierModel(),
        artifacts={PACKAGE_ARTIFACT: str(package_dir)},
        code_paths=[str(Path(__file__).resolve().parent)],
        signature=SIGNATURE,
        input_example=pd.DataFrame({IMAGE_COLUMN: example}) if example else None,
        pip_requirements=pinned_requirements(),
    )


def pinned_requirements() -> list[str]:
    return [f"{package}=={installed_version(package)}" for package in SERVING_PACKAGES]


class ModelLoadError(LookupError):
    """A model URI that does not resolve to a loadable prodcls image classifier."""


def load_model(uri: str) -> PyFuncModel:
    """The pyfunc model at `uri`; `ModelLoadError` names the URI and the store when it is not one.

    A version registered with another flavour (the bare ONNX model) loads, but cannot take
    images: it is refused here rather than failing on its first prediction.
    """
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as error:
        message = getattr(error, "message", str(error)).strip().splitlines()[0]
        raise ModelLoadError(
            f"Cannot load model {uri} from {mlflow.get_registry_uri()}: {message}"
        ) from error
    inputs = model.metadata.get_input_schema()
    if inputs is None or inputs.input_names() != [IMAGE_COLUMN]:
        raise ModelLoadError(
            f"Model {uri} is not a prodcls image classifier: it takes "
            f"{inputs.input_names() if inputs else 'an unknown input'}, not an {IMAGE_COLUMN!r} "
            "column (log it with prodcls_serving.model.log_pyfunc_model)"
        )
    return model


def _image_bytes(item: ImageItem, index: int) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if isinstance(item, os.PathLike):
        return _read_file(Path(item), item, index)
    if isinstance(item, str):
        return _str_bytes(item, index)
    raise ImageInputError(
        item, index, f"expected a path, bytes or base64 str, got {type(item).__name__}"
    )


def _str_bytes(text: str, index: int) -> bytes:
    """An existing file's bytes, else the decoded base64 (with or without a data URI prefix)."""
    if text.startswith(_DATA_URI_PREFIX):
        _, marker, payload = text.partition(_BASE64_MARKER)
        data = _decode_base64(payload) if marker else None
        if data is None:
            raise ImageInputError(text, index, "a data URI, but not one of base64 data")
        return data
    if _is_file(text):
        return _read_file(Path(text), text, index)
    data = _decode_base64(text)
    if data is None:
        raise ImageInputError(text, index, "neither an existing file nor base64")
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


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, transparent pixels on white: how the ingest stage stores training images."""
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _resized_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """(width, height) with the shorter side `shorter`; the longer truncated, as torchvision."""
    width, height = size
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def _image_items(model_input: Any) -> list[ImageItem]:
    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN not in model_input.columns:
            raise MlflowException(
                f"Expected a column {IMAGE_COLUMN!r}, got columns {list(model_input.columns)}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return model_input[IMAGE_COLUMN].tolist()
    if isinstance(model_input, pd.Series | list | tuple | np.ndarray):
        return list(model_input)
    return [model_input]


def _softmax(logits: np.ndarray) -> np.ndarray:
    exponents = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponents / exponents.sum(axis=1, keepdims=True)


def _session(model_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_LOG_ERRORS_ONLY
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
