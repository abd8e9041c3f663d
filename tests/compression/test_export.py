"""ONNX export and int8 quantisation of the real Lite0 classifier, on synthetic images."""

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from helpers import CLASSES, lite0_checkpoint, synthetic_images

from prodcls_pipeline.compression.int8 import float_output_nodes, quantize_int8
from prodcls_pipeline.data.preprocessing import eval_transform
from prodcls_pipeline.data.splitting import sample_split
from prodcls_pipeline.models.classifier import build_classifier, checkpoint_preprocessing
from prodcls_pipeline.models.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    parameter_count,
)
from prodcls_pipeline.runtime.batching import predict_top1
from prodcls_pipeline.runtime.sessions import create_session
from prodcls_pipeline.runtime.timing import measure


@pytest.fixture(scope="module")
def checkpoint() -> dict:
    return lite0_checkpoint()


@pytest.fixture(scope="module")
def images(checkpoint: dict) -> np.ndarray:
    transform = eval_transform(checkpoint_preprocessing(checkpoint))
    return np.stack([transform(image).numpy() for image in synthetic_images(12, seed=1)])


@pytest.fixture(scope="module")
def fp32(checkpoint: dict) -> bytes:
    return export_onnx(build_classifier(checkpoint), input_size=224)


@pytest.fixture(scope="module")
def int8(fp32: bytes, images: np.ndarray) -> bytes:
    return quantize_int8(fp32, (images[start : start + 4] for start in range(0, 8, 4)))


def test_export_matches_pytorch(checkpoint: dict, fp32: bytes, images: np.ndarray) -> None:
    with torch.no_grad():
        expected = build_classifier(checkpoint)(torch.from_numpy(images[:3])).numpy()
    actual = create_session(fp32).run(None, {INPUT_NAME: images[:3]})[0]
    assert actual.shape == (3, CLASSES)
    assert np.abs(actual - expected).max() <= 1e-4


def test_export_has_named_io_and_dynamic_batch(fp32: bytes) -> None:
    graph = onnx.load_from_string(fp32).graph
    assert [value.name for value in graph.input] == [INPUT_NAME]
    assert [value.name for value in graph.output] == [OUTPUT_NAME]
    batch, *rest = graph.input[0].type.tensor_type.shape.dim
    assert batch.dim_param and [dim.dim_value for dim in rest] == [3, 224, 224]


def test_export_is_deterministic(checkpoint: dict, fp32: bytes) -> None:
    assert export_onnx(build_classifier(checkpoint), input_size=224) == fp32


def test_int8_is_much_smaller_with_the_same_weights(fp32: bytes, int8: bytes) -> None:
    assert len(fp32) / len(int8) > 3.3
    assert parameter_count(int8) == parameter_count(fp32) > 3_000_000


def test_int8_computes_the_lite0_head_in_float(fp32: bytes, int8: bytes) -> None:
    [head] = [node for node in onnx.load_from_string(fp32).graph.node if node.op_type == "Gemm"]
    graph = onnx.load_from_string(int8).graph
    [producer] = [node for node in graph.node if OUTPUT_NAME in node.output]
    assert (producer.name, producer.op_type) == (head.name, "Gemm")
    weights = {initializer.name: initializer for initializer in graph.initializer}
    assert weights[producer.input[1]].data_type == onnx.TensorProto.FLOAT
    assert float_output_nodes(int8) == [{"name": head.name, "op_type": "Gemm"}]


def test_int8_agrees_with_fp32(fp32: bytes, int8: bytes, images: np.ndarray) -> None:
    sessions = {"fp32": create_session(fp32), "int8": create_session(int8)}
    predicted = predict_top1(sessions, [images[:5], images[5:]])
    assert len(predicted["int8"]) == len(images)
    assert np.mean(predicted["int8"] == predicted["fp32"]) >= 0.75


def test_measure_reports_positive_rates(int8: bytes, images: np.ndarray) -> None:
    timing = measure(create_session(int8), images[:4], batch_size=2, repeats=2)
    assert timing.ips_b1 > 0 and timing.ips_batch > 0
    assert 0 < timing.p50_ms <= timing.p95_ms


def test_sample_split_is_seeded_and_ignores_row_order() -> None:
    splits = pd.DataFrame(
        {
            "sha256": [f"{index:064x}" for index in range(20)],
            "label": "a",
            "coarse_label": "a",
            "split": ["train", "test"] * 10,
        }
    )
    chosen = sample_split(splits, "train", 4, seed=42)
    assert chosen == sample_split(splits.iloc[::-1], "train", 4, seed=42)
    assert chosen != sample_split(splits, "train", 4, seed=7)
    assert set(chosen) <= set(splits.loc[splits["split"] == "train", "sha256"])
    assert len(sample_split(splits, "train", 99, seed=42)) == 10
