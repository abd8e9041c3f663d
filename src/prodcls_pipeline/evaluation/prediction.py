"""Class probabilities of the full classifier on stored images, run by ONNX Runtime.

The whole model runs on every image (never cached embeddings), so the scores are exact for
any training mode, fine-tuned backbones included.
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from prodcls_pipeline.data.preprocessing import Preprocessing
from prodcls_pipeline.models.onnx_export import INPUT_NAME, export_onnx
from prodcls_pipeline.runtime.batching import ImageSource, image_batches
from prodcls_pipeline.runtime.sessions import create_session

# ORT's CPU throughput is flat beyond this batch on a few cores, and memory stays small.
BATCH_SIZE = 32


def predict_probabilities(
    model: nn.Module,
    store: ImageSource,
    sha256s: Sequence[str],
    preprocessing: Preprocessing,
    description: str | None = None,
) -> np.ndarray:
    """Softmax probabilities [N, classes] of `model` (exported to ONNX once) for each image."""
    session = create_session(export_onnx(model, preprocessing.input_size))
    logits = [
        session.run(None, {INPUT_NAME: batch})[0]
        for batch in image_batches(store, sha256s, preprocessing, BATCH_SIZE, description)
    ]
    return torch.softmax(torch.from_numpy(np.concatenate(logits)).double(), dim=1).numpy()
