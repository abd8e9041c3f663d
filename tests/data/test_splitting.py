import hashlib
import logging
import random

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from prodcls_pipeline.core.schema import SPLIT_COLUMNS, SPLITS
from prodcls_pipeline.data import splitting
from prodcls_pipeline.data.splitting import sample_split
from prodcls_pipeline.framework.params import SplitParams
from prodcls_pipeline.pipelines.split import create_pipeline

SEED = 42
VAL, TEST = 0.15, 0.2


def _sha(rng: random.Random) -> str:
    return hashlib.sha256(rng.randbytes(16)).hexdigest()


def _manifest(n_per_class: int, labels=("apple", "pear"), seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = [
        {"sha256": _sha(rng), "label": label, "coarse_label": "fruit", "pinned_split": ""}
        for label in labels
        for _ in range(n_per_class)
    ]
    return pd.DataFrame(rows)


def _split_of(splits: pd.DataFrame) -> dict[str, str]:
    return dict(zip(splits["sha256"], splits["split"], strict=True))


def test_output_columns_values_and_order():
    splits = splitting.assign_splits(_manifest(50), SEED, VAL, TEST)
    assert tuple(splits.columns) == SPLIT_COLUMNS
    assert splits["sha256"].is_monotonic_increasing
    assert set(splits["split"]) == set(SPLITS)


@pytest.mark.parametrize("trial", range(20))
def test_adding_removing_and_reordering_rows_never_moves_an_image(trial):
    rng = random.Random(trial)
    base = _manifest(200, labels=("a", "b", "c"), seed=trial)
    before = _split_of(splitting.assign_splits(base, SEED, VAL, TEST))
    added = _manifest(rng.randint(1, 100), labels=("a", "d"), seed=1000 + trial)
    kept = base.sample(frac=rng.uniform(0.3, 1.0), random_state=trial)
    changed = pd.concat([added, kept]).sample(frac=1.0, random_state=trial)
    after = _split_of(splitting.assign_splits(changed, SEED, VAL, TEST))
    assert all(after[sha] == before[sha] for sha in kept["sha256"])


def test_pinned_split_is_honoured():
    manifest = _manifest(300)
    manifest["pinned_split"] = ["train", "val", "test"] * 100 + [""] * 300
    splits = _split_of(splitting.assign_splits(manifest, SEED, VAL, TEST))
    for sha, pinned in zip(manifest["sha256"], manifest["pinned_split"], strict=True):
        if pinned:
            assert splits[sha] == pinned


def test_missing_pinned_split_and_coarse_label_are_treated_as_empty():
    manifest = _manifest(5).astype(object)
    manifest.loc[0, ["pinned_split", "coarse_label"]] = None
    splits = splitting.assign_splits(manifest, SEED, VAL, TEST)
    assert set(splits["split"]) <= set(SPLITS)
    assert splits["coarse_label"].notna().all()


def test_fractions_hold_within_each_class():
    splits = splitting.assign_splits(_manifest(10_000), SEED, VAL, TEST)
    shares = pd.crosstab(splits["label"], splits["split"], normalize="index")
    # The standard error of a share over 10k rows is about 0.004.
    assert (shares["test"] - TEST).abs().max() < 0.02
    assert (shares["val"] - VAL).abs().max() < 0.02
    assert (shares["train"] - (1 - VAL - TEST)).abs().max() < 0.02


def test_deterministic_and_seed_dependent():
    manifest = _manifest(500)
    first = splitting.assign_splits(manifest, SEED, VAL, TEST)
    pd.testing.assert_frame_equal(first, splitting.assign_splits(manifest, SEED, VAL, TEST))
    other = splitting.assign_splits(manifest, SEED + 1, VAL, TEST)
    assert (first["split"] != other["split"]).mean() > 0.2


def test_split_uniform_follows_the_documented_formula():
    digest = hashlib.sha256(b"7:apple:abc").digest()
    assert splitting.split_uniform("abc", "apple", 7) == int.from_bytes(digest[:8]) / 2**64


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.5, 0.5), (0.2, 1.0)])
def test_bad_fractions_raise(val, test):
    with pytest.raises(ValueError, match="fraction"):
        splitting.assign_splits(_manifest(3), SEED, val, test)


def test_unknown_pinned_split_and_duplicates_raise():
    manifest = _manifest(3)
    manifest.loc[0, "pinned_split"] = "holdout"
    with pytest.raises(ValueError, match="holdout"):
        splitting.assign_splits(manifest, SEED, VAL, TEST)
    with pytest.raises(ValueError, match="duplicate"):
        splitting.assign_splits(pd.concat([_manifest(3)] * 2), SEED, VAL, TEST)


def test_summary_counts_per_label_and_total():
    splits = pd.DataFrame(
        {
            "sha256": list("abcdef"),
            "label": ["x", "x", "x", "y", "y", "y"],
            "coarse_label": "",
            "split": ["train", "train", "test", "train", "val", "val"],
        }
    )
    summary = splitting.split_summary(splits).set_index("label")
    assert list(summary.columns) == ["train", "val", "test", "total"]
    assert summary.loc["x"].tolist() == [2, 0, 1, 3]
    assert summary.loc["y"].tolist() == [1, 2, 0, 3]
    assert summary.loc[splitting.TOTAL_ROW].tolist() == [3, 2, 1, 6]


def test_classes_without_train_or_test_images_are_warned_about(caplog):
    splits = pd.DataFrame(
        {
            "sha256": list("abc"),
            "label": ["x", "y", "y"],
            "coarse_label": "",
            "split": ["train", "train", "test"],
        }
    )
    assert splitting.missing_splits(splits) == {"train": [], "test": ["x"]}
    with caplog.at_level(logging.WARNING, logger=splitting.__name__):
        splitting.warn_on_missing_splits(splits)
    assert "no test images: x" in caplog.text


def test_split_pipeline_runs_on_memory_datasets():
    catalog = DataCatalog(
        {
            "validated_manifest": MemoryDataset(_manifest(40)),
            "params:split": MemoryDataset(SplitParams(val_fraction=VAL, test_fraction=TEST)),
            "params:seed": MemoryDataset(SEED),
        }
    )
    outputs = SequentialRunner().run(create_pipeline(), catalog)
    summary = outputs["split_summary"].load().set_index("label")
    assert summary.loc[splitting.TOTAL_ROW, "total"] == 80
    assert summary.loc[["apple", "pear"], "total"].tolist() == [40, 40]


def test_sample_split_is_seeded_and_ignores_row_order() -> None:
    splits = pd.DataFrame(
        {
            "sha256": [f"{index:064x}" for index in range(20)],
            "label": "a",
            "coarse_label": "a",
            "split": ["train", "test"] * 10,
        }
    )
    chosen = sample_split(splits, "train", 4, seed=42)
    assert chosen == sample_split(splits.iloc[::-1], "train", 4, seed=42)
    assert chosen != sample_split(splits, "train", 4, seed=7)
    assert set(chosen) <= set(splits.loc[splits["split"] == "train", "sha256"])
    assert len(sample_split(splits, "train", 99, seed=42)) == 10
