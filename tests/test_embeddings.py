import numpy as np
import pytest
import torch
from PIL import Image

from prodcls_pipeline.embeddings import (
    CLEAN_VIEW,
    EmbeddingStore,
    augmented_view_names,
    embed_missing,
    image_seed,
)


class CountingModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.images_seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.images_seen += len(images)
        return images.mean(dim=(2, 3))


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 255


def test_embeddings_are_computed_once_and_read_back(tmp_path) -> None:
    colours = {"a" * 64: (255, 0, 0), "b" * 64: (0, 255, 0)}
    store, model = EmbeddingStore(tmp_path), CountingModel()

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
