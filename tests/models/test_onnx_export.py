"""ONNX export of the real Lite0 classifier: same outputs as PyTorch, named I/O, deterministic."""

import numpy as np
import onnx
import torch
from helpers import CLASSES

from prodcls_pipeline.models.classifier import build_classifier
from prodcls_pipeline.models.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from prodcls_pipeline.runtime.sessions import create_session


def test_export_matches_pytorch(lite0: dict, lite0_fp32: bytes, lite0_images: np.ndarray) -> None:
    with torch.no_grad():
        expected = build_classifier(lite0)(torch.from_numpy(lite0_images[:3])).numpy()
    actual = create_session(lite0_fp32).run(None, {INPUT_NAME: lite0_images[:3]})[0]
    assert actual.shape == (3, CLASSES)
    assert np.abs(actual - expected).max() <= 1e-4


def test_export_has_named_io_and_dynamic_batch(lite0_fp32: bytes) -> None:
    graph = onnx.load_from_string(lite0_fp32).graph
    assert [value.name for value in graph.input] == [INPUT_NAME]
    assert [value.name for value in graph.output] == [OUTPUT_NAME]
    batch, *rest = graph.input[0].type.tensor_type.shape.dim
    assert batch.dim_param and [dim.dim_value for dim in rest] == [3, 224, 224]


def test_export_is_deterministic(lite0: dict, lite0_fp32: bytes) -> None:
    assert export_onnx(build_classifier(lite0), input_size=224) == lite0_fp32
