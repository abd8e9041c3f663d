"""Timing an ONNX Runtime session: images/s and latency percentiles."""

import numpy as np

from prodcls_pipeline.runtime.sessions import create_session
from prodcls_pipeline.runtime.timing import measure


def test_measure_reports_positive_rates(lite0_int8: bytes, lite0_images: np.ndarray) -> None:
    timing = measure(create_session(lite0_int8), lite0_images[:4], batch_size=2, repeats=2)
    assert timing.ips_b1 > 0 and timing.ips_batch > 0
    assert 0 < timing.p50_ms <= timing.p95_ms
