"""A folder holding the latest epoch checkpoint of a training run, so it can be resumed."""

import logging
from pathlib import Path
from typing import Any

import torch

from prodcls_pipeline.core.files import atomic_file

logger = logging.getLogger(__name__)

LATEST = "latest.pt"


class CheckpointStore:
    """`root/latest.pt`, replaced atomically after every epoch: a kill never leaves half a file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def path(self) -> Path:
        return self.root / LATEST

    def save(self, state: dict[str, Any]) -> None:
        with atomic_file(self.path) as file:
            torch.save(state, file)

    def load(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None when there is none or it cannot be read."""
        if not self.path.is_file():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError) as error:
            logger.warning("Checkpoint %s is unreadable (%s); starting fresh", self.path, error)
            return None
