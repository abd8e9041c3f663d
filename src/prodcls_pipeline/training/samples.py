"""What the training loop iterates over: indexed samples, fetched a whole batch at a time.

Every dataset here is indexed by a list of sample indices and returns (inputs, labels, indices),
so one DataLoader call yields one batch without per-sample collation, and the loop knows which
samples it holds (partial-mode adversarial training regenerates their images).
"""

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TensorSamples(Dataset):
    """Cached features or activations (any float dtype on disk) with their class indices."""

    def __init__(self, inputs: torch.Tensor, labels: np.ndarray) -> None:
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs = inputs
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: Sequence[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.inputs[index].float(), torch.from_numpy(self.labels[index.numpy()]), index


class ImageSamples(Dataset):
    """Images from the store, transformed on the fly (online augmentation in `full` mode)."""

    def __init__(
        self,
        sha256s: Sequence[str],
        labels: np.ndarray,
        open_image: Callable[[str], Image.Image],
        transform: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        if len(sha256s) != len(labels):
            raise ValueError(f"{len(sha256s)} images but {len(labels)} labels")
        self.sha256s = list(sha256s)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.open_image = open_image
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: Sequence[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = torch.stack([self.transform(self.open_image(self.sha256s[i])) for i in indices])
        return images, torch.from_numpy(self.labels[index.numpy()]), index


class ViewImages:
    """Regenerates the input image of a cached training sample from its index.

    Cached training samples are laid out view after view (see `EmbeddingStore.load_views`):
    view 0 is the clean image, view k the k-th augmented view drawn with the image's own seed,
    so the regenerated tensor is the one whose activations were cached.
    """

    def __init__(
        self,
        sha256s: Sequence[str],
        open_image: Callable[[str], Image.Image],
        clean_transform: Callable[[Image.Image], torch.Tensor],
        augmented: Callable[[Image.Image, str], list[torch.Tensor]],
    ) -> None:
        self.sha256s = list(sha256s)
        self.open_image = open_image
        self.clean_transform = clean_transform
        self.augmented = augmented

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._image(int(index)) for index in indices])

    def _image(self, index: int) -> torch.Tensor:
        view, position = divmod(index, len(self.sha256s))
        sha256 = self.sha256s[position]
        image = self.open_image(sha256)
        if view == 0:
            return self.clean_transform(image)
        return self.augmented(image, sha256)[view - 1]
