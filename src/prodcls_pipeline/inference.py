"""ONNX Runtime CPU inference: image batches in, top-1 predictions and timings out."""

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from prodcls_pipeline.backbones import Preprocessing, eval_transform
from prodcls_pipeline.export import INPUT_NAME, export_onnx

# ORT logs every unused initialiser it prunes as a warning; errors still show.
_ORT_LOG_ERRORS_ONLY = 3
_MILLISECONDS = 1000.0


class ImageSource(Protocol):
    """What inference needs of the image store: an RGB image by content hash."""

    def open(self, sha256: str) -> Image.Image: ...


@dataclass(frozen=True)
class Timing:
    """CPU throughput at batch 1 and at a larger batch, and batch-1 latency percentiles."""

    ips_b1: float
    ips_batch: float
    p50_ms: float
    p95_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def available_cores() -> int:
    """The cores this process may run on (a container's quota, not the host's count)."""
    return len(os.sched_getaffinity(0))


def session_options() -> ort.SessionOptions:
    """Every available core for each operator, all graph optimisations, errors-only logging."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cores()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = _ORT_LOG_ERRORS_ONLY
    return options


def create_session(model: bytes, options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """A CPU session, with `session_options()` unless other options are given."""
    return ort.InferenceSession(
        model, options or session_options(), providers=["CPUExecutionProvider"]
    )


def onnx_encoder(model: nn.Module, input_size: int) -> Callable[[torch.Tensor], np.ndarray]:
    """`model` run by ONNX Runtime: several times faster than eager PyTorch on a CPU."""
    session = create_session(export_onnx(model, input_size, output_name="features"))
    return lambda batch: session.run(None, {INPUT_NAME: batch.numpy()})[0]


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


def measure(
    session: ort.InferenceSession, images: np.ndarray, batch_size: int, repeats: int
) -> Timing:
    """Throughput as the median of `repeats` timed passes over `images`, after a warm-up pass."""
    batch_1_passes, latencies = [], []
    batch_n_passes = []
    _timed_pass(session, images, 1)
    _timed_pass(session, images, batch_size)
    for _ in range(repeats):
        calls = _timed_pass(session, images, 1)
        batch_1_passes.append(sum(calls))
        latencies.extend(calls)
        batch_n_passes.append(sum(_timed_pass(session, images, batch_size)))
    p50, p95 = np.percentile(latencies, [50, 95]) * _MILLISECONDS
    return Timing(
        ips_b1=len(images) / float(np.median(batch_1_passes)),
        ips_batch=len(images) / float(np.median(batch_n_passes)),
        p50_ms=float(p50),
        p95_ms=float(p95),
    )


def _timed_pass(session: ort.InferenceSession, images: np.ndarray, batch_size: int) -> list[float]:
    """Seconds each `run` call took over one pass of `images` in batches of `batch_size`."""
    seconds = []
    for start in range(0, len(images), batch_size):
        feed = {INPUT_NAME: images[start : start + batch_size]}
        began = time.perf_counter()
        session.run(None, feed)
        seconds.append(time.perf_counter() - began)
    return seconds
