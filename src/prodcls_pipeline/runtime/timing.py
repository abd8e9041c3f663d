"""CPU throughput and latency of an ONNX Runtime session."""

import time
from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort

from prodcls_pipeline.models.onnx_export import INPUT_NAME

_MILLISECONDS = 1000.0


@dataclass(frozen=True)
class Timing:
    """CPU throughput at batch 1 and at a larger batch, and batch-1 latency percentiles."""

    ips_b1: float
    ips_batch: float
    p50_ms: float
    p95_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


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
