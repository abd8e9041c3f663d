"""A folder holding the latest epoch checkpoint of a training run, so it can be resumed."""

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

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
        self.root.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
        os.replace(temporary, self.path)

    def load(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None when there is none or it cannot be read."""
        if not self.path.is_file():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError) as error:
            logger.warning("Checkpoint %s is unreadable (%s); starting fresh", self.path, error)
            return None
