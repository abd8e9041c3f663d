"""Near-duplicate images: cosine pairs over blocks, label conflicts and split leaks."""

import itertools

import numpy as np
import pandas as pd
import pytest

from prodcls_pipeline.core.rules import RuleParamsError
from prodcls_pipeline.validation.duplicates import (
    PAIR_COLUMNS,
    PAIR_LABEL_COLUMNS,
    PAIR_SPLIT_COLUMNS,
    DuplicateSettings,
    duplicates_result,
    label_conflicts,
    near_duplicates,
    split_leaks,
)

PARAMS_SECTION = {"threshold": 0.97, "label_conflicts": "block", "split_leaks": "warn"}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def random_embeddings(seed: int, count: int, dimensions: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dimensions))


def brute_force_pairs(sha256s: list[str], embeddings: np.ndarray, threshold: float) -> set:
    return {
        (sha256s[i], sha256s[j])
        for i, j in itertools.combinations(range(len(sha256s)), 2)
        if cosine(embeddings[i], embeddings[j]) >= threshold
    }


def pair_set(pairs: pd.DataFrame) -> set:
    return set(zip(pairs["sha256_a"], pairs["sha256_b"], strict=True))


def pairs_table(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


# near_duplicates


def test_pairs_above_the_threshold_are_found_once_each_in_input_order() -> None:
    base = random_embeddings(0, 6)
    rng = np.random.default_rng(1)
    # Rows 6, 7, 8 are slightly perturbed copies of rows 4, 0, 2.
    copies = base[[4, 0, 2]] + 0.05 * rng.normal(size=(3, base.shape[1]))
    embeddings = np.vstack([base, copies])
    sha256s = [f"img-{index}" for index in range(len(embeddings))]
    pairs = near_duplicates(sha256s, embeddings, threshold=0.9)
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    assert pair_set(pairs) == {("img-4", "img-6"), ("img-0", "img-7"), ("img-2", "img-8")}
    assert pair_set(pairs) == brute_force_pairs(sha256s, embeddings, 0.9)
    for row in pairs.itertuples():
        a, b = sha256s.index(row.sha256_a), sha256s.index(row.sha256_b)
        assert a < b
        assert row.similarity == pytest.approx(cosine(embeddings[a], embeddings[b]), abs=1e-5)
    assert pairs["similarity"].is_monotonic_decreasing


def test_pairs_match_brute_force_and_are_sorted_highest_first() -> None:
    embeddings = random_embeddings(2, 40, dimensions=4)
    sha256s = [f"{index:02d}" for index in range(40)]
    pairs = near_duplicates(sha256s, embeddings, threshold=0.8)
    assert len(pairs) > 10
    assert pair_set(pairs) == brute_force_pairs(sha256s, embeddings, 0.8)
    assert len(pair_set(pairs)) == len(pairs)  # once each
    assert (pairs["similarity"] >= 0.8).all()
    assert pairs["similarity"].is_monotonic_decreasing


def test_the_threshold_is_inclusive() -> None:
    embeddings = random_embeddings(3, 10)
    sha256s = [f"img-{index}" for index in range(10)]
    everything = near_duplicates(sha256s, embeddings, threshold=-1.0)
    assert len(everything) == 10 * 9 // 2
    # A threshold equal to a computed similarity keeps that pair.
    third = everything.iloc[2]
    at_third = near_duplicates(sha256s, embeddings, threshold=float(third["similarity"]))
    assert len(at_third) == 3
    assert pair_set(at_third) == pair_set(everything.iloc[:3])


def test_equal_similarities_are_ordered_by_sha256() -> None:
    embeddings = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    pairs = near_duplicates(["d", "c", "b", "a"], embeddings, threshold=0.99)
    assert list(zip(pairs["sha256_a"], pairs["sha256_b"], strict=True)) == [("b", "a"), ("d", "c")]
    np.testing.assert_allclose(pairs["similarity"], 1.0)
    assert (pairs["similarity"] <= 1.0).all()


def test_a_repeated_sha256_is_used_at_its_first_row_only() -> None:
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01], [0.0, 1.0]])
    # Row 2 repeats "x" with other values: ignored; row 3 repeats "y" with the same ones.
    pairs = near_duplicates(["x", "y", "x", "y"], embeddings, threshold=0.5)
    assert pairs.empty
    pairs = near_duplicates(["x", "y", "x", "z"], embeddings, threshold=0.5)
    assert pair_set(pairs) == {("y", "z")}


@pytest.mark.parametrize("max_block_elements", [1, 7, 40, 41, 399])
def test_small_blocks_give_the_same_pairs_as_one_big_block(max_block_elements: int) -> None:
    embeddings = random_embeddings(4, 40, dimensions=3)
    sha256s = [f"{index:02d}" for index in range(40)]
    whole = near_duplicates(sha256s, embeddings, threshold=0.9)
    assert len(whole) > 20
    blocked = near_duplicates(sha256s, embeddings, 0.9, max_block_elements=max_block_elements)
    pd.testing.assert_frame_equal(blocked, whole)


def test_zero_vectors_do_not_crash_and_pair_with_nothing() -> None:
    embeddings = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1e-3]])
    with np.errstate(all="raise"):
        pairs = near_duplicates(["z1", "a", "z2", "b"], embeddings, threshold=0.9)
    assert pair_set(pairs) == {("a", "b")}
    assert np.isfinite(pairs["similarity"]).all()


def test_no_images_or_one_image_give_no_pairs() -> None:
    # np.zeros((0, 0)) is what `embed_frozen` returns for no images.
    for embeddings in (np.zeros((0, 0)), np.ones((0, 4)), np.ones((1, 4))):
        pairs = near_duplicates([f"{i}" for i in range(len(embeddings))], embeddings, 0.5)
        assert pairs.empty and list(pairs.columns) == list(PAIR_COLUMNS)


def test_multidimensional_embeddings_are_flattened_per_row() -> None:
    embeddings = np.array(
        [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.01]], [[0.0, 1.0], [1, 0]]]
    )
    pairs = near_duplicates(["a", "b", "c"], embeddings, threshold=0.99)
    assert pair_set(pairs) == {("a", "b")}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="embeddings but"):
        near_duplicates(["a", "b"], np.ones((3, 2)), 0.9)
    with pytest.raises(ValueError, match="max_block_elements"):
        near_duplicates(["a"], np.ones((1, 2)), 0.9, max_block_elements=0)


# Label conflicts and split leaks

PAIRS = pairs_table(
    [
        ("a", "b", 0.999),
        ("c", "d", 0.995),
        ("e", "f", 0.99),
        ("g", "unknown", 0.985),
        ("h", "i", 0.98),
    ]
)


def test_label_conflicts_are_the_pairs_with_different_labels() -> None:
    labels = {"a": "apple", "b": "apple", "c": "pear", "d": "apple", "e": 1, "f": 2, "g": "x"}
    labels |= {"h": "kiwi", "i": "lime"}
    conflicts = label_conflicts(PAIRS, labels)
    assert list(conflicts.columns) == [*PAIR_COLUMNS, *PAIR_LABEL_COLUMNS]
    assert list(zip(conflicts["sha256_a"], conflicts["sha256_b"], strict=True)) == [
        ("c", "d"),
        ("e", "f"),
        ("h", "i"),
    ]
    assert list(conflicts["label_a"]) == ["pear", 1, "kiwi"]
    assert list(conflicts["label_b"]) == ["apple", 2, "lime"]
    assert list(conflicts.index) == [0, 1, 2]
    assert "label_a" not in PAIRS.columns  # the input is left alone


def test_split_leaks_are_test_against_train_or_val_only() -> None:
    splits = {"a": "train", "b": "test", "c": "val", "d": "test", "e": "train", "f": "val"}
    splits |= {"g": "test", "h": "test", "i": "test"}
    leaks = split_leaks(PAIRS, splits)
    assert list(leaks.columns) == [*PAIR_COLUMNS, *PAIR_SPLIT_COLUMNS]
    # train/test and val/test leak; train/val, test/test and a pair with an unknown image do not.
    assert list(zip(leaks["sha256_a"], leaks["sha256_b"], strict=True)) == [("a", "b"), ("c", "d")]
    assert list(leaks["split_a"]) == ["train", "val"]
    assert list(leaks["split_b"]) == ["test", "test"]
    reversed_pair = pairs_table([("b", "a", 0.99)])
    assert len(split_leaks(reversed_pair, splits)) == 1


def test_no_pairs_give_empty_conflicts_and_leaks_with_their_columns() -> None:
    empty = near_duplicates([], np.zeros((0, 4)), 0.9)
    conflicts = label_conflicts(empty, {"a": "x"})
    leaks = split_leaks(empty, {})
    assert conflicts.empty and list(conflicts.columns) == [*PAIR_COLUMNS, *PAIR_LABEL_COLUMNS]
    assert leaks.empty and list(leaks.columns) == [*PAIR_COLUMNS, *PAIR_SPLIT_COLUMNS]


# Settings and result


def test_settings_come_from_params_and_the_threshold_is_a_cosine() -> None:
    settings = DuplicateSettings.from_params({**PARAMS_SECTION, "threshold": 1})
    assert settings.threshold == 1.0 and isinstance(settings.threshold, float)
    assert DuplicateSettings.from_params({**PARAMS_SECTION, "threshold": -1}).threshold == -1.0


@pytest.mark.parametrize("threshold", [1.01, -1.5, 97])
def test_a_threshold_outside_minus_one_to_one_is_refused(threshold: float) -> None:
    with pytest.raises(RuleParamsError, match=r"validate.duplicates.threshold .* \[-1, 1\]"):
        DuplicateSettings.from_params({**PARAMS_SECTION, "threshold": threshold})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"threshold": 0.97, "label_conflicts": "block"}, "missing split_leaks"),
        ({**PARAMS_SECTION, "leaks": "warn"}, "unknown leaks"),
        ({**PARAMS_SECTION, "split_leaks": "ignore"}, "split_leaks must be one of"),
        ({**PARAMS_SECTION, "threshold": "high"}, "threshold must be a number"),
    ],
)
def test_bad_sections_are_refused(section: dict, message: str) -> None:
    with pytest.raises(RuleParamsError, match="validate.duplicates") as raised:
        DuplicateSettings.from_params(section)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("conflict_policy", "leak_policy", "conflicts", "leaks", "blocking"),
    [
        ("block", "warn", 1, 2, (True, False)),
        ("warn", "block", 1, 2, (False, True)),
        ("block", "block", 0, 0, (False, False)),
        ("block", "block", 0, 1, (False, True)),
        ("warn", "warn", 3, 3, (False, False)),
    ],
)
def test_result_counts_findings_and_blocks_per_policy(
    conflict_policy: str, leak_policy: str, conflicts: int, leaks: int, blocking: tuple
) -> None:
    settings = DuplicateSettings(
        threshold=0.97, label_conflicts=conflict_policy, split_leaks=leak_policy
    )
    pairs = pairs_table([(f"a{index}", f"b{index}", 0.99) for index in range(4)])
    result = duplicates_result(pairs, pairs.iloc[:conflicts], pairs.iloc[:leaks], settings)
    assert result == {
        "name": "duplicates",
        "threshold": 0.97,
        "pairs": 4,
        "label_conflicts": {
            "count": conflicts,
            "flagged": conflicts > 0,
            "blocking": blocking[0],
            "policy": conflict_policy,
        },
        "split_leaks": {
            "count": leaks,
            "flagged": leaks > 0,
            "blocking": blocking[1],
            "policy": leak_policy,
        },
    }
