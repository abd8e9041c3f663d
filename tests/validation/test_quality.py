"""The data-quality checks of validate on hand-made embeddings: near-duplicates are judged when
an image first comes, and a warning policy lets a flagged check pass."""

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import yaml
from helpers import REPO, row, sha

from prodcls_pipeline.validation.quality import QualityFindings, QualitySettings, quality_checks

DIMENSIONS = 16
NAMES = [f"photo{index}" for index in range(12)]
CONFLICT = "near-duplicates with two labels"


def settings(**duplicates: str) -> QualitySettings:
    validate = yaml.safe_load((REPO / "params.yaml").read_text())["validate"]
    validate["duplicates"] = {**validate["duplicates"], **duplicates}
    return QualitySettings.from_params(validate, seed=0)


def embedder(copies: dict[str, str]) -> Callable[[Sequence[str]], np.ndarray]:
    """Orthogonal embeddings per name; each key of `copies` embeds as its value's near-copy."""
    basis = np.eye(DIMENSIONS)
    vectors = {sha(name): basis[index] for index, name in enumerate(NAMES)}
    for copy, original in copies.items():
        vectors[sha(copy)] = vectors[sha(original)] + 0.01 * basis[-1]

    def embed(sha256s: Sequence[str]) -> np.ndarray:
        return np.stack([vectors[sha256] for sha256 in sha256s])

    return embed


def manifest(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def checks_of(
    current: pd.DataFrame, accepted: pd.DataFrame, **duplicates: str
) -> tuple[dict, QualityFindings]:
    embed = embedder({"copy": "photo0"})
    split_of = dict.fromkeys(current["sha256"], "train")
    findings = quality_checks(current, accepted, embed, split_of, set(), settings(**duplicates))
    return {check.name: check for check in findings.checks}, findings


def accepted_rows() -> list[dict]:
    labels = ["apple", "pear"]
    return [row("drop-001", labels[index % 2], name) for index, name in enumerate(NAMES)] + [
        row("drop-001", "pear", "copy")
    ]


def test_a_new_near_copy_under_another_label_is_a_conflict_that_blocks_or_warns() -> None:
    accepted = manifest([row("drop-001", "apple", name) for name in NAMES])
    current = manifest([*accepted.to_dict("records"), row("drop-002", "pear", "copy")])

    blocking, findings = checks_of(current, accepted, label_conflicts="block")
    warning, _ = checks_of(current, accepted, label_conflicts="warn")

    assert not blocking[CONFLICT].success and not blocking[CONFLICT].warning
    assert warning[CONFLICT].success and warning[CONFLICT].warning
    assert warning[CONFLICT].summary.startswith("warning:")
    [pair] = findings.pairs.to_dict("records")
    assert {pair["sha256_a"], pair["sha256_b"]} == {sha("photo0"), sha("copy")}


def test_a_redelivered_pair_was_judged_when_it_first_came() -> None:
    accepted = manifest(accepted_rows())
    redelivered = [{**image, "drop": "drop-003"} for image in accepted_rows()[:1]]
    redelivered.append({**accepted_rows()[-1], "drop": "drop-003"})
    current = manifest([*accepted.to_dict("records"), *redelivered])

    checks, findings = checks_of(current, accepted, label_conflicts="block")

    assert checks[CONFLICT].success and not checks[CONFLICT].warning
    assert findings.pairs.empty
