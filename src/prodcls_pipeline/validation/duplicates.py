"""Near-duplicate images: pairs of different files whose frozen-backbone embeddings nearly agree.

Identical bytes share a sha256 and are caught by the manifest's own checks; what is found here is
the same picture delivered twice as different files (re-encoded, resized, re-exported), which
matters in two ways:

- `label_conflicts`: the two copies carry different labels, so at least one label is wrong;
- `split_leaks`: one copy is in test and the other in train or val, so the test split partly
  measures memory, and test accuracy is inflated.

Similarity is the cosine of the two embeddings, computed in float32 over blocks of rows so that
memory stays bounded (`max_block_elements` similarities at a time: 16 M, 64 MB, by default) for
any number of images. Each unordered pair is reported once, its two images in input order.

The threshold, measured on the Grocery Store images with EfficientNet-Lite0 embeddings (see
`benchmarks/README.md`, "label_noise.py"): a copy re-encoded as JPEG quality 60 at 80 % of the
size keeps a cosine of at least 0.98 with its original (median 0.995), while the closest other
photo of the dataset, often a consecutive shot of the same item, reaches 0.96 and above for a
few per cent of images. 0.97 separates the two on that data; it is a property of the backbone
and the shots, so remeasure it when either changes.

Pure numpy/pandas: no Kedro, no torch.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import pandas as pd

from prodcls_pipeline.core.rules import Rule, RuleParamsError
from prodcls_pipeline.core.schema import TEST, TRAIN, VAL

PAIR_COLUMNS = ("sha256_a", "sha256_b", "similarity")
PAIR_LABEL_COLUMNS = ("label_a", "label_b")
PAIR_SPLIT_COLUMNS = ("split_a", "split_b")
# A pair leaks when one image is held out for testing and the other was trained or tuned on.
LEAKING_SPLIT_PAIRS = frozenset({frozenset({TRAIN, TEST}), frozenset({VAL, TEST})})

Policy = Literal["block", "warn"]
POLICIES = get_args(Policy)

# Similarities held in memory at once: 16 M float32 values, 64 MB.
DEFAULT_MAX_BLOCK_ELEMENTS = 16_000_000
# Rows of norm 0 (a constant image's embedding can be) stay 0 instead of dividing by 0.
_MIN_NORM = 1e-12


@dataclass(frozen=True)
class DuplicateSettings(Rule):
    """The `validate.duplicates` section of params.yaml.

    `threshold`: the cosine similarity from which two images are near-duplicates.
    `label_conflicts`/`split_leaks`: whether a conflict or a leak blocks the drop or warns.
    """

    params_section: ClassVar[str] = "validate.duplicates"

    threshold: float
    label_conflicts: Policy
    split_leaks: Policy

    def __post_init__(self) -> None:
        super().__post_init__()
        if not -1 <= self.threshold <= 1:
            raise RuleParamsError(
                f"{self.params_section}.threshold must be a cosine in [-1, 1], got {self.threshold}"
            )


def near_duplicates(
    sha256s: Sequence[str],
    embeddings: np.ndarray,
    threshold: float,
    max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
) -> pd.DataFrame:
    """Pairs of different images (`PAIR_COLUMNS`) whose cosine similarity is >= `threshold`.

    Rows follow `sha256s`; a sha256 given more than once is used at its first row only (the same
    bytes are not a near-duplicate of themselves). Sorted by similarity, highest first.
    """
    embeddings = np.asarray(embeddings)
    if len(embeddings) != len(sha256s):
        raise ValueError(f"{len(embeddings)} embeddings but {len(sha256s)} sha256s")
    if max_block_elements < 1:
        raise ValueError(f"max_block_elements must be >= 1, got {max_block_elements}")
    first_rows = _first_rows(sha256s)
    unit = _unit_rows(embeddings[first_rows])
    names = [sha256s[row] for row in first_rows]
    count = len(unit)
    block_rows = max(1, max_block_elements // max(count, 1))
    firsts, seconds, similarities = [], [], []
    for start in range(0, count, block_rows):
        stop = min(start + block_rows, count)
        # Only columns after the block's first row: each pair is computed once, from its
        # earlier image's block; the part of the block's own square below the diagonal is cut.
        block = unit[start:stop] @ unit[start:].T
        rows, columns = np.nonzero(block >= threshold)
        columns = columns + start
        rows = rows + start
        later = columns > rows
        firsts.append(rows[later])
        seconds.append(columns[later])
        similarities.append(block[rows[later] - start, columns[later] - start])
    first = np.concatenate(firsts) if firsts else np.zeros(0, dtype=int)
    second = np.concatenate(seconds) if seconds else np.zeros(0, dtype=int)
    similarity = np.concatenate(similarities) if similarities else np.zeros(0)
    pairs = pd.DataFrame(
        {
            "sha256_a": pd.Series([names[index] for index in first], dtype="str"),
            "sha256_b": pd.Series([names[index] for index in second], dtype="str"),
            "similarity": pd.Series(np.clip(similarity, -1.0, 1.0), dtype="float64"),
        },
        columns=list(PAIR_COLUMNS),
    )
    return pairs.sort_values(
        ["similarity", "sha256_a", "sha256_b"],
        ascending=[False, True, True],
        ignore_index=True,
        kind="stable",
    )


def label_conflicts(pairs: pd.DataFrame, labels_by_sha256: Mapping[str, Any]) -> pd.DataFrame:
    """The pairs whose two images carry different labels, with `label_a`, `label_b` added.

    A pair with an image `labels_by_sha256` does not know is left out: it cannot conflict.
    """
    return _with_pair_values(pairs, labels_by_sha256, PAIR_LABEL_COLUMNS, _differ)


def split_leaks(pairs: pd.DataFrame, split_by_sha256: Mapping[str, str]) -> pd.DataFrame:
    """The pairs with one image in test and the other in train or val, with `split_a`,
    `split_b` added. A pair with an image `split_by_sha256` does not know is left out."""
    return _with_pair_values(pairs, split_by_sha256, PAIR_SPLIT_COLUMNS, _straddles_test)


def duplicates_result(
    pairs: pd.DataFrame, conflicts: pd.DataFrame, leaks: pd.DataFrame, settings: DuplicateSettings
) -> dict[str, Any]:
    """The check's outcome for the report: counts, and whether each finding blocks or warns."""
    return {
        "name": "duplicates",
        "threshold": settings.threshold,
        "pairs": len(pairs),
        "label_conflicts": {
            "count": len(conflicts),
            "flagged": bool(len(conflicts)),
            "blocking": bool(len(conflicts)) and settings.label_conflicts == "block",
            "policy": settings.label_conflicts,
        },
        "split_leaks": {
            "count": len(leaks),
            "flagged": bool(len(leaks)),
            "blocking": bool(len(leaks)) and settings.split_leaks == "block",
            "policy": settings.split_leaks,
        },
    }


def _first_rows(sha256s: Sequence[str]) -> list[int]:
    first: dict[str, int] = {}
    for row, sha256 in enumerate(sha256s):
        first.setdefault(sha256, row)
    return list(first.values())


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    # The row width spelled out: `-1` cannot be inferred from an empty array (no images).
    rows = embeddings.astype(np.float32).reshape(len(embeddings), math.prod(embeddings.shape[1:]))
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, _MIN_NORM)


def _differ(value_a: Any, value_b: Any) -> bool:
    return value_a != value_b


def _straddles_test(split_a: str, split_b: str) -> bool:
    return frozenset({split_a, split_b}) in LEAKING_SPLIT_PAIRS


def _with_pair_values(
    pairs: pd.DataFrame,
    value_by_sha256: Mapping[str, Any],
    columns: tuple[str, str],
    selected: Callable[[Any, Any], bool],
) -> pd.DataFrame:
    column_a, column_b = columns
    keys = set(value_by_sha256)
    known = pairs["sha256_a"].isin(keys) & pairs["sha256_b"].isin(keys)
    table = pairs[known].copy()
    table[column_a] = [value_by_sha256[sha] for sha in table["sha256_a"]]
    table[column_b] = [value_by_sha256[sha] for sha in table["sha256_b"]]
    keep = [selected(a, b) for a, b in zip(table[column_a], table[column_b], strict=True)]
    return table[np.asarray(keep, dtype=bool)].reset_index(drop=True)
