"""int8 quantisation leaves the classifier head and what follows it in float, and says so; on the
real Lite0 classifier it is much smaller and agrees with fp32."""

import numpy as np
import onnx
import pytest
import torch
from helpers import LITE0_CALIBRATION
from onnx import TensorProto, helper
from torch import nn

from prodcls_pipeline.compression.int8 import (
    float_output_nodes,
    head_and_after,
    is_quantized,
    quantize_int8,
)
from prodcls_pipeline.models.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    parameter_count,
)
from prodcls_pipeline.runtime.batching import predict_top1
from prodcls_pipeline.runtime.sessions import create_session

CLASSES = 5
SIZE = 16
QDQ = {"QuantizeLinear", "DequantizeLinear"}
CLEAR_MARGIN = 1.0


class TinyClassifier(nn.Module):
    """Two convolutions, then a head written as MatMul + Add, and a scale after it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.weight = nn.Parameter(torch.randn(CLASSES, 16))
        self.bias = nn.Parameter(torch.randn(CLASSES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (self.features(images) @ self.weight.T + self.bias) * 0.5


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    generator = np.random.default_rng(0)
    return generator.normal(size=(16, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def fp32() -> bytes:
    torch.manual_seed(0)
    return export_onnx(TinyClassifier(), input_size=SIZE)


@pytest.fixture(scope="module")
def int8(fp32: bytes, images: np.ndarray) -> bytes:
    return quantize_int8(fp32, (images[start : start + 4] for start in range(0, 16, 4)))


def downstream(graph: onnx.GraphProto, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Every node fed, directly or not, by `node`'s outputs."""
    tensors, fed = set(node.output), []
    for candidate in graph.node:
        if tensors.intersection(candidate.input):
            fed.append(candidate)
            tensors.update(candidate.output)
    return fed


def test_the_head_and_everything_after_it_compute_in_float(int8: bytes) -> None:
    graph = onnx.load_from_string(int8).graph
    # ORT's pre-processing fuses the MatMul + Add into one Gemm and names it anew.
    [head] = [node for node in graph.node if node.op_type in {"Gemm", "MatMul"}]
    after = downstream(graph, head)
    assert [node.op_type for node in after] == ["Mul"]
    assert OUTPUT_NAME in after[-1].output
    assert graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    weights = {initializer.name: initializer for initializer in graph.initializer}
    assert weights[head.input[1]].data_type == TensorProto.FLOAT
    assert float_output_nodes(int8) == [
        {"name": node.name, "op_type": node.op_type} for node in [head, *after]
    ]


def test_the_backbone_is_still_int8(int8: bytes) -> None:
    graph = onnx.load_from_string(int8).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convolutions) == 2
    assert all(set(conv.input[:2]) <= dequantized for conv in convolutions)


def test_float_logits_keep_their_resolution(fp32: bytes, int8: bytes, images: np.ndarray) -> None:
    expected = create_session(fp32).run(None, {INPUT_NAME: images})[0]
    logits = create_session(int8).run(None, {INPUT_NAME: images})[0]
    assert logits.dtype == np.float32
    # Dequantised int8 logits sit on a grid of one scale: their gaps are multiples of it.
    gaps = np.diff(np.unique(logits))
    assert not np.allclose(gaps / gaps.min(), np.round(gaps / gaps.min()), atol=1e-3)
    assert np.abs(logits - expected).max() < 0.1 * np.abs(expected).max()


def test_is_quantized_tells_the_models_apart(fp32: bytes, int8: bytes) -> None:
    assert is_quantized(int8) and not is_quantized(fp32)
    with pytest.raises(ValueError, match="not quantised"):
        float_output_nodes(fp32)


def test_outputs_dequantised_at_the_end_leave_nothing_in_float() -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w"], ["y"], name="head"),
            helper.make_node("QuantizeLinear", ["y", "scale"], ["q"], name="quantize"),
            helper.make_node("DequantizeLinear", ["q", "scale"], ["logits"], name="dequantize"),
        ],
        "quantised-logits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 0.0, 0.0, 1.0]),
            helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1]),
        ],
    )
    assert float_output_nodes(helper.make_model(graph).SerializeToString()) == []


def test_a_model_without_a_linear_head_is_refused() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "no-head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    with pytest.raises(ValueError, match="no Gemm or MatMul"):
        head_and_after(graph)


def test_int8_is_much_smaller_with_the_same_weights(lite0_fp32: bytes, lite0_int8: bytes) -> None:
    assert len(lite0_fp32) / len(lite0_int8) > 3.3
    assert parameter_count(lite0_int8) == parameter_count(lite0_fp32) > 3_000_000


def test_int8_computes_the_lite0_head_in_float(lite0_fp32: bytes, lite0_int8: bytes) -> None:
    [head] = [
        node for node in onnx.load_from_string(lite0_fp32).graph.node if node.op_type == "Gemm"
    ]
    graph = onnx.load_from_string(lite0_int8).graph
    [producer] = [node for node in graph.node if OUTPUT_NAME in node.output]
    assert (producer.name, producer.op_type) == (head.name, "Gemm")
    weights = {initializer.name: initializer for initializer in graph.initializer}
    assert weights[producer.input[1]].data_type == onnx.TensorProto.FLOAT
    assert float_output_nodes(lite0_int8) == [{"name": head.name, "op_type": "Gemm"}]


def test_int8_agrees_with_fp32_on_photos_it_was_not_calibrated_on(
    lite0_fp32: bytes, lite0_int8: bytes, lite0_images: np.ndarray
) -> None:
    held_out = lite0_images[LITE0_CALIBRATION:]
    sessions = {"fp32": create_session(lite0_fp32), "int8": create_session(lite0_int8)}
    predicted = predict_top1(sessions, [held_out[:5], held_out[5:]])
    assert len(predicted["int8"]) == len(held_out)
    expected = sessions["fp32"].run(None, {INPUT_NAME: held_out})[0]
    logits = sessions["int8"].run(None, {INPUT_NAME: held_out})[0]
    centred = [values - values.mean(axis=1, keepdims=True) for values in (expected, logits)]
    assert np.corrcoef(centred[0].ravel(), centred[1].ravel())[0, 1] > 0.9
    # The head is random, so many photos are near ties between classes that int8 may break
    # either way; a clear fp32 decision must survive.
    top_two = np.sort(expected, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > CLEAR_MARGIN
    assert clear.sum() >= 3
    assert np.mean(predicted["int8"][clear] == predicted["fp32"][clear]) >= 0.8
