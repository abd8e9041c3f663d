"""The MLflow pyfunc flavour of a model package: images in, labels and probabilities out.

Serving needs numpy, pandas, Pillow, onnxruntime and mlflow only, never torch: the logged model
carries this package's source (`code_paths`), so a client with those five packages can load it,
and `mlflow models serve` answers a bad image with HTTP 400 and a message, not a stack trace.
"""

import base64
import json
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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

from prodcls_serving.common.decoding import ImageLimits
from prodcls_serving.common.sessions import available_cores, create_session
from prodcls_serving.files import IMAGE_LIMITS_KEY, LABEL_MAP_FILE, MODEL_FILE, PREPROCESSING_FILE
from prodcls_serving.inputs import ImageInputError, ImageItem, read_image, request_bytes
from prodcls_serving.preprocessing import preprocess

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


@dataclass(frozen=True)
class ModelPackage:
    """A loaded package: the ONNX session, the labels, the preprocessing it expects and the
    image limits it enforces (those its training data was ingested under)."""

    session: ort.InferenceSession
    labels: list[str]
    label_to_coarse: dict[str, str]
    preprocessing: dict[str, Any]
    limits: ImageLimits

    @classmethod
    def load(cls, directory: Path) -> "ModelPackage":
        label_map = json.loads((directory / LABEL_MAP_FILE).read_text(encoding="utf-8"))
        index_to_label = label_map["index_to_label"]
        preprocessing = json.loads((directory / PREPROCESSING_FILE).read_text(encoding="utf-8"))
        return cls(
            session=create_session(directory / MODEL_FILE),
            labels=[index_to_label[str(index)] for index in range(len(index_to_label))],
            label_to_coarse=label_map["label_to_coarse"],
            preprocessing=preprocessing,
            limits=ImageLimits(**preprocessing[IMAGE_LIMITS_KEY]),
        )

    def predict(self, items: Sequence[ImageItem], top_k: int = DEFAULT_TOP_K) -> pd.DataFrame:
        """Columns label, coarse_label, probability (top-1 softmax) and top_k, one row per item.

        Raises `ImageInputError` for the first item that is not a decodable image or exceeds
        the package's image limits; no item beyond the limits is decoded.
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
        """Softmax of the logits [items, classes], BATCH_SIZE images per ONNX call. Pillow's C
        code releases the GIL: a thread per core decodes each batch, the next one while ONNX
        Runtime scores this one, so at most two batches are in memory."""
        if not items:
            return np.empty((0, len(self.labels)))
        if len(items) == 1:  # nothing to overlap: threads would only add their start-up
            return self._score(self._tensor(items[0], 0)[np.newaxis])
        starts = range(0, len(items), BATCH_SIZE)
        scored = []
        with ThreadPoolExecutor(max_workers=available_cores()) as pool:
            pending = self._decode(pool, items, starts[0])
            for following in [*starts[1:], None]:
                batch = np.stack([future.result() for future in pending])
                if following is not None:
                    pending = self._decode(pool, items, following)
                scored.append(self._score(batch))
        return np.concatenate(scored)

    def _decode(
        self, pool: ThreadPoolExecutor, items: Sequence[ImageItem], start: int
    ) -> list[Future]:
        """The preprocessed tensors of the batch from `start`, being decoded by `pool`; a bad
        item raises `ImageInputError` from its future, the first bad one first."""
        return [
            pool.submit(self._tensor, items[index], index)
            for index in range(start, min(start + BATCH_SIZE, len(items)))
        ]

    def _tensor(self, item: ImageItem, index: int) -> np.ndarray:
        return preprocess(read_image(item, index, self.limits), self.preprocessing)

    def _score(self, batch: np.ndarray) -> np.ndarray:
        spec = self.preprocessing
        (logits,) = self.session.run([spec["output_name"]], {spec["input_name"]: batch})
        return _softmax(logits.astype(np.float64))


class ProductClassifierModel(mlflow.pyfunc.PythonModel):
    """The pyfunc model: a column `image` of base64 or data URIs (or raw bytes) → labels and
    scores. It never reads a path: it may serve clients on other machines."""

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
            items = [
                request_bytes(item, index) for index, item in enumerate(_image_items(model_input))
            ]
            return self.package.predict(items, top_k)
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
