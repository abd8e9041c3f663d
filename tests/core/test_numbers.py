"""The decimals reported numbers keep."""

import numpy as np

from prodcls_pipeline.core.numbers import round_measure, round_metric


def test_metrics_keep_four_decimals_as_plain_floats() -> None:
    value = round_metric(np.float64(2 / 3))
    assert value == 0.6667 and type(value) is float
    assert round_metric(1) == 1.0 and type(round_metric(1)) is float


def test_sizes_and_timings_keep_two_decimals() -> None:
    assert round_measure(1234.5678) == 1234.57
    assert type(round_measure(np.float32(0.125))) is float
