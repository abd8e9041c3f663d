"""Frozen-backbone outputs, computed once per (backbone, view, image) and cached by sha256.

Outputs are pooled embeddings (`head` mode) or, under a key naming the block, the activations
after a block (`partial` mode), which are stored as float16 to halve their size.

A view is "clean" (the deterministic eval transform) or an augmented view whose key names the
augmentation policy digest and the view index, so a changed policy never reuses stale views.
"""

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from prodcls_pipeline.core.files import atomic_file

CLEAN_VIEW = "clean"


class EmbeddingStore:
    """`root/<backbone>/<view>/<sha[:2]>/<sha>.npy`; files are written once and never deleted."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, backbone: str, view: str, sha256: str) -> Path:
        return self.root / backbone / view / sha256[:2] / f"{sha256}.npy"

    def has(self, backbone: str, view: str, sha256: str) -> bool:
        return self.path(backbone, view, sha256).is_file()

    def put(
        self,
        backbone: str,
        view: str,
        sha256: str,
        embedding: np.ndarray,
        dtype: type[np.floating] = np.float32,
    ) -> None:
        with atomic_file(self.path(backbone, view, sha256)) as file:
            np.save(file, embedding.astype(dtype))

    def load(self, backbone: str, view: str, sha256s: Sequence[str]) -> np.ndarray:
        """Stacked embeddings of `sha256s`, in order; every one must have been computed."""
        missing = [sha for sha in sha256s if not self.has(backbone, view, sha)]
        if missing:
            raise KeyError(
                f"{len(missing)} {view!r} embeddings missing for {backbone}, e.g. {missing[0]}"
            )
        return np.stack([np.load(self.path(backbone, view, sha)) for sha in sha256s])

    def load_views(self, backbone: str, views: Sequence[str], sha256s: Sequence[str]) -> np.ndarray:
        """All `views` of `sha256s`, view after view: row `v * len(sha256s) + i` is view v of
        image i."""
        return np.concatenate([self.load(backbone, view, sha256s) for view in views])


def augmented_view_names(policy: dict, views: int) -> list[str]:
    """Cache keys of the augmented views: they change whenever the policy changes."""
    digest = hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()[:12]
    return [f"aug-{digest}-{index}" for index in range(views)]


def image_seed(seed: int, sha256: str) -> int:
    """A per-image seed, so each image's augmented views do not depend on processing order."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{sha256}".encode()).digest()[:4], "big")


def embed_missing(
    encode: Callable[[torch.Tensor], np.ndarray],
    store: EmbeddingStore,
    backbone: str,
    view_names: Sequence[str],
    sha256s: Sequence[str],
    open_image: Callable[[str], Image.Image],
    make_views: Callable[[Image.Image, str], list[torch.Tensor]],
    batch_size: int,
    dtype: type[np.floating] = np.float32,
) -> int:
    """Embed every (image, view) not yet in the store; returns how many outputs it computed.

    `encode` maps a batch of input tensors to embeddings; `make_views(image, sha256)` returns
    one input tensor per name in `view_names`; outputs are stored as `dtype`.
    """
    todo = [sha for sha in sha256s if not all(store.has(backbone, v, sha) for v in view_names)]
    if not todo:
        return 0
    label = f"embed {backbone} [{', '.join(view_names)}]"
    computed = 0
    with torch.inference_mode(), tqdm(total=len(todo), desc=label, unit="img") as progress:
        for chunk in _chunks(todo, batch_size):
            views = [make_views(open_image(sha), sha) for sha in chunk]
            for view_index, view_name in enumerate(view_names):
                # Only the missing views are encoded: adding views reuses the cached ones.
                missing = [
                    i for i, sha in enumerate(chunk) if not store.has(backbone, view_name, sha)
                ]
                if not missing:
                    continue
                batch = torch.stack([views[i][view_index] for i in missing])
                for i, embedding in zip(missing, encode(batch), strict=True):
                    store.put(backbone, view_name, chunk[i], embedding, dtype)
                computed += len(missing)
            progress.update(len(chunk))
    return computed


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
