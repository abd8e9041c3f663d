"""Suspected label errors: out-of-fold probe probabilities read by cleanlab."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from prodcls_pipeline.core.rules import RuleParamsError
from prodcls_pipeline.validation.label_quality import (
    CHECK_NAME,
    SUSPECT_COLUMNS,
    LabelQualitySettings,
    checked_classes,
    drop_suspects,
    find_suspects,
    label_quality_result,
    out_of_fold_probabilities,
    suspect_share,
)

PARAMS_SECTION = {
    "folds": 5,
    "inverse_regularization": 1.0,
    "max_iterations": 1000,
    "filter_by": "low_self_confidence",
    "max_given_probability": 1.0,
    "max_suspect_share": 0.1,
    "policy": "block",
}
SETTINGS = LabelQualitySettings.from_params(PARAMS_SECTION, seed=3)
CLUSTERS = 6
PER_CLUSTER = 30
DIMENSIONS = 16
FLIPS = 6


@dataclasses.dataclass(frozen=True)
class Clustered:
    sha256s: list[str]
    embeddings: np.ndarray
    labels: list[str]
    true_labels: list[str]
    flipped: set[str]


def sha(index: int) -> str:
    return f"{index:064x}"


def clustered(data_seed: int, flips: int = FLIPS) -> Clustered:
    """CLUSTERS well-separated Gaussian clusters; `flips` labels moved to another cluster's."""
    rng = np.random.default_rng(data_seed)
    centres = rng.normal(size=(CLUSTERS, DIMENSIONS))
    centres *= 10 / np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(CLUSTERS), PER_CLUSTER)
    embeddings = centres[truth] + 0.5 * rng.normal(size=(len(truth), DIMENSIONS))
    true_labels = [f"class-{cluster}" for cluster in truth]
    labels = list(true_labels)
    flipped_rows = rng.choice(len(truth), size=flips, replace=False)
    for row in flipped_rows:
        labels[row] = f"class-{(truth[row] + rng.integers(1, CLUSTERS)) % CLUSTERS}"
    sha256s = [sha(index) for index in range(len(truth))]
    return Clustered(sha256s, embeddings, labels, true_labels, {sha256s[r] for r in flipped_rows})


def with_settings(**changes: object) -> LabelQualitySettings:
    return dataclasses.replace(SETTINGS, **changes)


# Settings


def test_from_params_builds_the_settings_and_reads_an_integer_as_a_float() -> None:
    settings = LabelQualitySettings.from_params(
        {**PARAMS_SECTION, "inverse_regularization": 1}, seed=11
    )
    assert settings == dataclasses.replace(SETTINGS, seed=11)
    assert isinstance(settings.inverse_regularization, float)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"folds": 1}, "folds must be >= 2"),
        ({"inverse_regularization": 0.0}, "inverse_regularization must be > 0"),
        ({"inverse_regularization": -1.0}, "inverse_regularization must be > 0"),
        ({"max_iterations": 0}, "max_iterations must be >= 1"),
        ({"filter_by": "most_confusing"}, "filter_by must be one of"),
        ({"max_given_probability": 0.0}, "max_given_probability must be in (0, 1]"),
        ({"max_given_probability": 1.5}, "max_given_probability must be in (0, 1]"),
        ({"max_suspect_share": 1.5}, "max_suspect_share must be in [0, 1]"),
        ({"max_suspect_share": -0.1}, "max_suspect_share must be in [0, 1]"),
        ({"policy": "stop"}, "policy must be one of ('block', 'warn')"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(changes: dict, message: str) -> None:
    with pytest.raises(RuleParamsError, match="validate.label_quality") as raised:
        with_settings(**changes)
    assert message in str(raised.value)
    # The same values from params.yaml are refused too.
    with pytest.raises(RuleParamsError, match="validate.label_quality"):
        LabelQualitySettings.from_params({**PARAMS_SECTION, **changes}, seed=3)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(RuleParamsError) as raised:
        with_settings(folds=0, policy="stop")
    assert "folds" in str(raised.value) and "policy" in str(raised.value)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({key: value for key, value in PARAMS_SECTION.items() if key != "folds"}, "missing folds"),
        ({**PARAMS_SECTION, "fold": 5}, "unknown fold"),
        ({**PARAMS_SECTION, "folds": "5"}, "validate.label_quality.folds must be of type int"),
        ({**PARAMS_SECTION, "folds": True}, "validate.label_quality.folds must be an integer"),
        ({**PARAMS_SECTION, "max_suspect_share": "10%"}, "must be a number"),
    ],
)
def test_from_params_refuses_missing_unknown_and_mistyped_keys(section: dict, message: str) -> None:
    with pytest.raises(RuleParamsError, match="validate.label_quality") as raised:
        LabelQualitySettings.from_params(section, seed=3)
    assert message in str(raised.value)


# Out-of-fold probabilities


def test_checked_classes_are_the_sorted_labels_with_at_least_folds_images() -> None:
    labels = ["b"] * 5 + ["a"] * 7 + ["c"] * 4 + ["d"] * 5
    assert checked_classes(labels, SETTINGS) == ["a", "b", "d"]
    assert checked_classes(labels, with_settings(folds=6)) == []  # only "a": nothing to tell apart
    assert checked_classes([], SETTINGS) == []


def test_out_of_fold_rows_are_distributions_and_rare_classes_rows_are_nan() -> None:
    data = clustered(0, flips=0)
    # Two images of a new class: fewer than `folds`, so neither scored nor ever suggested.
    labels = list(data.labels)
    labels[0] = labels[PER_CLUSTER] = "new-class"
    probabilities = out_of_fold_probabilities(data.embeddings, labels, SETTINGS)
    columns = sorted(set(labels))
    assert probabilities.shape == (len(labels), len(columns))
    rare = np.array([label == "new-class" for label in labels])
    assert np.isnan(probabilities[rare]).all()
    scored = probabilities[~rare]
    assert not np.isnan(scored).any()
    np.testing.assert_allclose(scored.sum(axis=1), 1.0, atol=1e-5)
    assert (scored[:, columns.index("new-class")] == 0).all()
    # The clusters are far apart: the probe is right about (nearly) every clean image.
    given = [columns.index(label) for label in np.asarray(labels)[~rare]]
    assert np.mean(scored.argmax(axis=1) == given) > 0.97


def test_probabilities_are_out_of_fold_so_noise_labels_are_not_memorised() -> None:
    # More dimensions than images: a probe that saw an image would fit its random label (the
    # same pipeline in-sample gives its own label ~0.98); one that did not can only guess.
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(90, 256))
    labels = list(rng.choice(["a", "b", "c"], size=90))
    probabilities = out_of_fold_probabilities(embeddings, labels, SETTINGS)
    given = probabilities[np.arange(90), [["a", "b", "c"].index(label) for label in labels]]
    assert given.mean() < 0.45
    assert (
        np.mean(probabilities.argmax(axis=1) == [ord(label) - ord("a") for label in labels]) < 0.5
    )


def test_no_checked_class_gives_all_nan_rows_and_no_suspects() -> None:
    data = clustered(2, flips=0)
    labels = ["only"] * (len(data.labels) - 2) + ["rare", "rare"]
    assert np.isnan(out_of_fold_probabilities(data.embeddings, labels, SETTINGS)).all()
    suspects = find_suspects(data.sha256s, data.embeddings, labels, SETTINGS)
    assert suspects.empty and list(suspects.columns) == list(SUSPECT_COLUMNS)


def test_no_images_give_no_suspects() -> None:
    # np.zeros((0, 0)) is what `embed_frozen` returns for no images.
    suspects = find_suspects([], np.zeros((0, 0)), [], SETTINGS)
    assert suspects.empty and list(suspects.columns) == list(SUSPECT_COLUMNS)
    assert label_quality_result(suspects, [], SETTINGS)["flagged"] is False


def test_embeddings_and_labels_must_have_the_same_length() -> None:
    data = clustered(0, flips=0)
    with pytest.raises(ValueError, match="embeddings but"):
        out_of_fold_probabilities(data.embeddings[:-1], data.labels, SETTINGS)


# Suspects


def test_flipped_labels_are_found_with_high_precision_and_recall() -> None:
    found = flipped = flagged = 0
    for data_seed in range(3):
        data = clustered(data_seed)
        suspects = find_suspects(data.sha256s, data.embeddings, data.labels, SETTINGS)
        flagged_shas = set(suspects["sha256"])
        found += len(flagged_shas & data.flipped)
        flipped += len(data.flipped)
        flagged += len(flagged_shas)
    # cleanlab's count of issues is conservative (a flip whose true class the probe gives less
    # than that class's mean self-confidence is not counted), so recall is high, not perfect.
    assert found / flipped >= 0.8, (found, flipped)
    assert found / flagged >= 0.9, (found, flagged)


def test_a_suspect_row_reads_the_probabilities_and_suggests_the_true_class() -> None:
    data = clustered(0)
    suspects = find_suspects(data.sha256s, data.embeddings, data.labels, SETTINGS)
    assert list(suspects.columns) == list(SUSPECT_COLUMNS) and len(suspects) > 0
    probabilities = out_of_fold_probabilities(data.embeddings, data.labels, SETTINGS)
    columns = sorted(set(data.labels))
    for row in suspects.itertuples():
        index = data.sha256s.index(row.sha256)
        assert row.given_label == data.labels[index]
        assert row.suggested_label != row.given_label
        assert row.given_probability == pytest.approx(
            probabilities[index, columns.index(row.given_label)]
        )
        others = np.delete(probabilities[index], columns.index(row.given_label))
        assert row.suggested_probability == pytest.approx(others.max())
        if row.sha256 in data.flipped:
            assert row.suggested_label == data.true_labels[index]
    # Worst first: lowest probability of the given label.
    assert suspects["given_probability"].is_monotonic_increasing


def test_the_cap_keeps_only_the_flags_whose_given_label_the_probe_gives_at_most_it() -> None:
    data = clustered(1)
    flagged = find_suspects(data.sha256s, data.embeddings, data.labels, SETTINGS)
    probabilities = sorted(flagged["given_probability"])
    assert len(set(probabilities)) >= 2, probabilities
    cap = (probabilities[0] + probabilities[-1]) / 2
    capped = find_suspects(
        data.sha256s, data.embeddings, data.labels, with_settings(max_given_probability=cap)
    )
    expected = flagged[flagged["given_probability"] <= cap].reset_index(drop=True)
    pd.testing.assert_frame_equal(capped, expected)
    assert 0 < len(capped) < len(flagged)


def test_clean_data_has_no_or_very_few_suspects() -> None:
    suspects = [
        len(find_suspects(data.sha256s, data.embeddings, data.labels, SETTINGS))
        for data in (clustered(data_seed, flips=0) for data_seed in range(3))
    ]
    assert sum(suspects) <= 1, suspects


def test_rare_classes_are_never_suspects_nor_suggested() -> None:
    data = clustered(4)
    labels = list(data.labels)
    # Two images of a new class, each in the middle of another class's cluster.
    rare_rows = [1, PER_CLUSTER + 1]
    for row in rare_rows:
        labels[row] = "new-class"
    suspects = find_suspects(data.sha256s, data.embeddings, labels, SETTINGS)
    assert not set(suspects["sha256"]) & {data.sha256s[row] for row in rare_rows}
    assert "new-class" not in set(suspects["suggested_label"])
    assert "new-class" not in set(suspects["given_label"])


def test_suspects_depend_only_on_the_inputs_and_the_seed() -> None:
    data = clustered(5)
    first = find_suspects(data.sha256s, data.embeddings, data.labels, SETTINGS)
    again = find_suspects(data.sha256s, data.embeddings, data.labels, SETTINGS)
    pd.testing.assert_frame_equal(first, again)
    same = out_of_fold_probabilities(data.embeddings, data.labels, SETTINGS)
    np.testing.assert_array_equal(
        same, out_of_fold_probabilities(data.embeddings, data.labels, SETTINGS)
    )
    # Another seed assigns other folds: the probabilities move.
    other = out_of_fold_probabilities(data.embeddings, data.labels, with_settings(seed=4))
    assert not np.allclose(same, other)


def test_labels_may_be_integers() -> None:
    data = clustered(0)
    codes = [int(label.removeprefix("class-")) for label in data.labels]
    suspects = find_suspects(data.sha256s, data.embeddings, codes, SETTINGS)
    by_name = find_suspects(data.sha256s, data.embeddings, data.labels, SETTINGS)
    assert list(suspects["sha256"]) == list(by_name["sha256"])
    assert [f"class-{code}" for code in suspects["given_label"]] == list(by_name["given_label"])


def test_a_sha256_given_twice_is_refused() -> None:
    data = clustered(0)
    sha256s = [*data.sha256s[:-1], data.sha256s[0]]
    with pytest.raises(ValueError, match="each sha256 once"):
        find_suspects(sha256s, data.embeddings, data.labels, SETTINGS)


# Drop share and result


def suspects_table(sha256s: list[str]) -> pd.DataFrame:
    """A suspects table in worst-first order (given probabilities rising)."""
    count = len(sha256s)
    return pd.DataFrame(
        {
            "sha256": sha256s,
            "given_label": ["a"] * count,
            "suggested_label": ["b"] * count,
            "given_probability": np.linspace(0.01, 0.2, count),
            "suggested_probability": np.linspace(0.9, 0.7, count),
        },
        columns=list(SUSPECT_COLUMNS),
    )


def test_suspect_share_and_drop_suspects_count_only_the_drop() -> None:
    suspects = suspects_table(["s1", "a1", "s2", "a2", "s3"])
    drop = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10"]
    assert suspect_share(suspects, drop) == pytest.approx(0.3)
    # Repeated sha256s are one image.
    assert suspect_share(suspects, [*drop, "s1", "s2"]) == pytest.approx(0.3)
    assert suspect_share(suspects, []) == 0.0
    assert suspect_share(suspects_table([]), drop) == 0.0
    mine = drop_suspects(suspects, drop)
    assert list(mine["sha256"]) == ["s1", "s2", "s3"]
    assert list(mine.index) == [0, 1, 2]
    assert mine["given_probability"].is_monotonic_increasing


@pytest.mark.parametrize(
    ("policy", "suspect_count", "flagged", "blocking"),
    [
        ("block", 3, True, True),
        ("warn", 3, True, False),
        ("block", 1, False, False),  # 10 %: at the threshold, not above it
        ("warn", 0, False, False),
    ],
)
def test_result_flags_a_drop_above_the_share_and_blocks_per_policy(
    policy: str, suspect_count: int, flagged: bool, blocking: bool
) -> None:
    drop = [f"drop-{index}" for index in range(10)]
    suspects = suspects_table([*drop[:suspect_count], "accepted-1"])
    settings = with_settings(policy=policy, max_suspect_share=0.1)
    result = label_quality_result(suspects, drop, settings)
    assert result == {
        "name": CHECK_NAME,
        "share": suspect_count / 10,
        "threshold": 0.1,
        "flagged": flagged,
        "blocking": blocking,
        "policy": policy,
        "count": suspect_count,
        "drop_images": 10,
    }
    assert type(result["flagged"]) is bool and type(result["blocking"]) is bool


def test_result_share_is_rounded() -> None:
    drop = [f"drop-{index}" for index in range(3)]
    result = label_quality_result(suspects_table(drop[:1]), drop, SETTINGS)
    assert result["share"] == 0.3333
