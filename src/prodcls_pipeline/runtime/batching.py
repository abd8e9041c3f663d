"""Stored images as normalised batches, with their class indices, and top-1 of sessions on them."""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

import numpy as np
import onnxruntime as ort
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from prodcls_pipeline.data.preprocessing import Preprocessing, eval_transform
from prodcls_pipeline.models.onnx_export import INPUT_NAME


class ImageSource(Protocol):
    """What inference needs of the image store: an RGB image by content hash."""

    def open(self, sha256: str) -> Image.Image: ...


def image_batches(
    store: ImageSource,
    sha256s: Sequence[str],
    preprocessing: Preprocessing,
    batch_size: int,
    description: str | None = None,
) -> Iterator[np.ndarray]:
    """Normalised float32 batches [B, 3, S, S] of the given images, in order."""
    transform = eval_transform(preprocessing)
    progress = tqdm(total=len(sha256s), desc=description, unit="img", disable=description is None)
    with progress:
        for start in range(0, len(sha256s), batch_size):
            chunk = sha256s[start : start + batch_size]
            yield np.stack([transform(store.open(sha256)).numpy() for sha256 in chunk])
            progress.update(len(chunk))


def labelled_batches(
    store: ImageSource,
    sha256s: Sequence[str],
    label_indices: Sequence[int],
    preprocessing: Preprocessing,
    batch_size: int,
    description: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Normalised image batches of the given images, each with its class indices."""
    indices = np.asarray(label_indices, dtype=np.int64)
    batches = image_batches(store, sha256s, preprocessing, batch_size, description)
    for start, batch in zip(range(0, len(indices), batch_size), batches, strict=True):
        yield batch, indices[start : start + len(batch)]


def class_indices(splits: pd.DataFrame, sha256s: Sequence[str], labels: Sequence[str]) -> list[int]:
    """The index in `labels` of each image's label, as `splits` gives it."""
    label_of = splits.drop_duplicates("sha256").set_index("sha256")["label"]
    index_of = {label: index for index, label in enumerate(labels)}
    return [index_of[label_of[sha256]] for sha256 in sha256s]


def predict_top1(
    sessions: Mapping[str, ort.InferenceSession], batches: Iterable[np.ndarray]
) -> dict[str, np.ndarray]:
    """Top-1 class indices of every session on the same batches, decoding each image once."""
    predictions: dict[str, list[np.ndarray]] = {name: [] for name in sessions}
    for batch in batches:
        for name, session in sessions.items():
            logits = session.run(None, {INPUT_NAME: batch})[0]
            predictions[name].append(logits.argmax(axis=1))
    return {name: np.concatenate(chunks) for name, chunks in predictions.items()}
