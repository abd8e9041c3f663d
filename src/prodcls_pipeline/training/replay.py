"""Replay: what a warm run trains on, so that retraining costs what the drop costs.

The champion has learnt the training images it (and its ancestors) trained on; its checkpoint
keeps them as `sha256 -> label` (`TRAINED_ON`). A warm run trains on every (image, label) pair the
champion has not seen (new images and relabelled ones) and a seeded sample of `per_new` seen images
per new one, so it keeps what it knew (rehearsal against forgetting) at a cost that grows with
the drop, not with the history. With nothing new, or no record of what the champion saw, it
trains on the whole training split.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

# The classifier checkpoint's key for the images the model has learnt: sha256 -> label.
TRAINED_ON = "trained_on"


@dataclass(frozen=True)
class Replay:
    """How many training images a warm run trains on, of the split's."""

    new: int
    replayed: int
    available: int

    @classmethod
    def whole(cls, count: int) -> "Replay":
        """A run on the whole training split of `count` images (cold, or nothing to replay)."""
        return cls(new=count, replayed=0, available=count)

    def as_dict(self) -> dict[str, int]:
        return {"new": self.new, "replayed": self.replayed, "available": self.available}


def trained_on(train: pd.DataFrame) -> dict[str, str]:
    """What a checkpoint records as learnt: every training image of its run with its label."""
    return dict(zip(train["sha256"], train["label"], strict=True))


def replay_rows(
    train: pd.DataFrame,
    learnt: Mapping[str, str] | None,
    per_new: float | None,
    seed: int,
) -> tuple[pd.DataFrame, Replay]:
    """The rows of `train` a warm run trains on, in `train`'s order, and their counts.

    `learnt` is the champion's `TRAINED_ON` record (None: unknown); `per_new` None replays
    every seen image."""
    if per_new is not None and per_new < 0:
        raise ValueError(f"train.warm_start_replay must be >= 0 or null, not {per_new}")
    everything = Replay.whole(len(train))
    if learnt is None:
        logger.info("The champion records no training images: the warm run trains on all")
        return train, everything
    pairs = zip(train["sha256"], train["label"], strict=True)
    seen = np.array([learnt.get(sha256) == label for sha256, label in pairs], dtype=bool)
    new = int((~seen).sum())
    if new == 0:
        logger.info("Every training image is one the champion learnt: the warm run trains on all")
        return train, everything
    seen_positions = np.flatnonzero(seen)
    count = len(seen_positions)
    if per_new is not None:
        count = min(count, round(per_new * new))
    replayed = np.random.default_rng(seed).choice(seen_positions, size=count, replace=False)
    keep = ~seen
    keep[replayed] = True
    counts = Replay(new=new, replayed=count, available=len(train))
    logger.info("Warm run: %s", counts.as_dict())
    return train[keep], counts
