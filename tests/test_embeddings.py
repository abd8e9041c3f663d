import numpy as np
import pytest
import torch
from PIL import Image

from prodcls_pipeline.backbones import create_backbone
from prodcls_pipeline.embeddings import (
    CLEAN_VIEW,
    EmbeddingStore,
    augmented_view_names,
    embed_missing,
    image_seed,
)
from prodcls_pipeline.inference import onnx_encoder


class CountingEncoder:
    def __init__(self) -> None:
        self.images_seen = 0

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        self.images_seen += len(images)
        return images.mean(dim=(2, 3)).numpy()


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 255


def test_embeddings_are_computed_once_and_read_back(tmp_path) -> None:
    colours = {"a" * 64: (255, 0, 0), "b" * 64: (0, 255, 0)}
    store, model = EmbeddingStore(tmp_path), CountingEncoder()

    def embed(shas: list[str]) -> int:
        return embed_missing(
            model, store, "toy", [CLEAN_VIEW], shas,
            lambda sha: Image.new("RGB", (4, 4), colours[sha]),
            lambda image, _sha: [to_tensor(image)], batch_size=1,
        )  # fmt: skip

    assert embed(["a" * 64]) == 1
    assert embed(["a" * 64, "b" * 64]) == 1
    assert model.images_seen == 2
    loaded = store.load("toy", CLEAN_VIEW, ["b" * 64, "a" * 64])
    assert np.allclose(loaded, [[0, 1, 0], [1, 0, 0]])
    with pytest.raises(KeyError, match="missing"):
        store.load("toy", CLEAN_VIEW, ["c" * 64])


def test_augmented_view_names_follow_the_policy() -> None:
    assert augmented_view_names({"flip": 0.5}, 2) != augmented_view_names({"flip": 0.4}, 2)
    assert len(set(augmented_view_names({"flip": 0.5}, 3))) == 3
    assert image_seed(1, "a" * 64) == image_seed(1, "a" * 64) != image_seed(2, "a" * 64)


def test_onnx_encoder_matches_the_pytorch_backbone() -> None:
    backbone, preprocessing = create_backbone("efficientnet_lite0")
    images = torch.randn(3, 3, preprocessing.input_size, preprocessing.input_size)
    with torch.no_grad():
        expected = backbone(images).numpy()
    encoded = onnx_encoder(backbone, preprocessing.input_size)(images)
    assert encoded.shape == (3, backbone.num_features)
    assert np.abs(encoded - expected).max() < 1e-4
