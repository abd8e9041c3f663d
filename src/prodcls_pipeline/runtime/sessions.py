"""ONNX Runtime CPU sessions with the project's settings, and a torch module run through one.

The session factory itself is serving's (`prodcls_serving.common.sessions`): one set of session
options for every stage and for the served model.
"""

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from prodcls_pipeline.models.onnx_export import INPUT_NAME, export_onnx
from prodcls_serving.common.sessions import available_cores, create_session, session_options

__all__ = ["available_cores", "create_session", "onnx_encoder", "session_options"]


def onnx_encoder(model: nn.Module, input_size: int) -> Callable[[torch.Tensor], np.ndarray]:
    """`model` run by ONNX Runtime: several times faster than eager PyTorch on a CPU."""
    session = create_session(export_onnx(model, input_size, output_name="features"))
    return lambda batch: session.run(None, {INPUT_NAME: batch.numpy()})[0]
