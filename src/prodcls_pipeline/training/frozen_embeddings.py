"""Pooled embeddings of the frozen pretrained backbone, computed once per image and view.

The validate stage's drift, label-quality and duplicate checks and the data benchmarks all read
the same embeddings: the backbone `train.backbone` names, with its ImageNet weights and no head,
on the deterministic eval transform of each image. They live in an `EmbeddingStore` keyed like
`head`-mode training embeddings, so an image is embedded once, whoever asks first.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from prodcls_pipeline.data.preprocessing import eval_transform
from prodcls_pipeline.models.backbones import backbone_identity, create_backbone
from prodcls_pipeline.runtime.sessions import onnx_encoder
from prodcls_pipeline.training.embedding_cache import CLEAN_VIEW, EmbeddingStore, embed_missing


def embed_frozen(
    sha256s: Sequence[str],
    open_image: Callable[[str], Image.Image],
    store: EmbeddingStore,
    backbone: str,
    weights_file: str | Path | None,
    batch_size: int,
    view: str = CLEAN_VIEW,
) -> np.ndarray:
    """Embeddings of `sha256s` (rows in order), computing only those not yet in `store`.

    `open_image(sha256)` returns the image; `view` names what it shows (the clean image, or a
    benchmark's distorted copy), so different views of one image never share a cache entry.
    """
    key = backbone_identity(backbone, weights_file)
    missing = [sha for sha in dict.fromkeys(sha256s) if not store.has(key, view, sha)]
    if missing:
        model, preprocessing = create_backbone(backbone, weights_file)
        encode = onnx_encoder(model, preprocessing.input_size)
        clean = eval_transform(preprocessing)
        embed_missing(
            encode,
            store,
            key,
            [view],
            missing,
            open_image,
            lambda image, _sha: [clean(image)],
            batch_size,
        )
    if not sha256s:
        return np.zeros((0, 0), dtype=np.float32)
    return store.load(key, view, sha256s)
