import numpy as np
import pytest
import torch
from PIL import Image

from prodcls_pipeline.models.backbones import create_backbone
from prodcls_pipeline.runtime.sessions import onnx_encoder
from prodcls_pipeline.training.embedding_cache import (
    CLEAN_VIEW,
    EmbeddingStore,
    augmented_view_names,
    embed_missing,
    image_seed,
)


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


def test_activations_are_stored_in_half_precision_and_loaded_view_after_view(tmp_path) -> None:
    store = EmbeddingStore(tmp_path)
    for view, value in ((CLEAN_VIEW, 1.0), ("aug-0", 2.0)):
        for sha in ("a" * 64, "b" * 64):
            store.put("toy.blocks5", view, sha, np.full((2, 3, 3), value), np.float16)
    loaded = store.load_views("toy.blocks5", [CLEAN_VIEW, "aug-0"], ["a" * 64, "b" * 64])
    assert loaded.dtype == np.float16
    assert loaded.shape == (4, 2, 3, 3)
    assert loaded[:, 0, 0, 0].tolist() == [1, 1, 2, 2]


def test_only_missing_views_are_encoded(tmp_path) -> None:
    store, model = EmbeddingStore(tmp_path), CountingEncoder()

    def embed(view_names: list[str]) -> int:
        return embed_missing(
            model, store, "toy", view_names, ["a" * 64],
            lambda sha: Image.new("RGB", (4, 4)),
            lambda image, _sha: [to_tensor(image)] * len(view_names), batch_size=1,
        )  # fmt: skip

    assert embed(["v0", "v1"]) == 2
    assert embed(["v0", "v1", "v2", "v3"]) == 2
    assert model.images_seen == 4
