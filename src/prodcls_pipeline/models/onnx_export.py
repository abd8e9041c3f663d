"""ONNX export of the classifier, and the weight count of an exported (or quantised) model."""

import io
import warnings

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
# 17 is the newest opset the TorchScript exporter and ORT's QDQ quantizer both handle well,
# and old enough for any ONNX Runtime still deployed in plants.
OPSET = 17
# These roles of an initialiser describe how a weight is quantised, not a weight of the model.
_QUANTIZATION_PARAMETER_SLOTS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}


def export_onnx(
    model: nn.Module, input_size: int, opset: int = OPSET, output_name: str = OUTPUT_NAME
) -> bytes:
    """Export an eval-mode image model: float `images` [N, 3, S, S] → `logits`, dynamic N."""
    dummy = torch.zeros(1, 3, input_size, input_size)
    buffer = io.BytesIO()
    # The TorchScript exporter is chosen on purpose (the dynamo one needs onnxscript): its
    # deprecation notice is known and would only clutter every `kedro run` log.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.eval(),
            (dummy,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[output_name],
            dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()), full_check=True)
    return buffer.getvalue()


def parameter_count(model: bytes, nonzero: bool = False) -> int:
    """Elements of the model's weight initialisers (only the non-zero ones if `nonzero`: what
    unstructured pruning removes); quantisation scales and zero points excluded."""
    graph = onnx.load_from_string(model).graph
    quantization_parameters = {
        node.input[slot]
        for node in graph.node
        for slot in _QUANTIZATION_PARAMETER_SLOTS.get(node.op_type, ())
        if slot < len(node.input)
    }
    weights = [
        initializer
        for initializer in graph.initializer
        if initializer.name not in quantization_parameters
    ]
    if nonzero:
        return sum(int(np.count_nonzero(numpy_helper.to_array(weight))) for weight in weights)
    return sum(int(np.prod(weight.dims)) for weight in weights)
