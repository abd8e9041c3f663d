"""Exact McNemar and the paired bootstrap of the top-1 difference, against hand-computed values."""

from math import comb, sqrt

import numpy as np
import pytest

from prodcls_pipeline.audit.significance import compare_paired, mcnemar_exact_p


def answers(both_right: int, only_a: int, only_b: int, both_wrong: int) -> tuple:
    """Per-image correctness of models A and B with these paired counts, in that order."""
    a = [True] * both_right + [True] * only_a + [False] * only_b + [False] * both_wrong
    b = [True] * both_right + [False] * only_a + [True] * only_b + [False] * both_wrong
    return np.array(a), np.array(b)


def two_sided_binomial(smaller: int, discordant: int) -> float:
    """2 · P(X ≤ smaller) for X ~ Binomial(discordant, 1/2), capped at 1."""
    tail = sum(comb(discordant, k) for k in range(smaller + 1)) / 2**discordant
    return min(1.0, 2 * tail)


def test_mcnemar_matches_the_exact_binomial_tail() -> None:
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 * 0.5**5)  # 0.0625
    assert mcnemar_exact_p(1, 4) == pytest.approx(2 * (1 + 5) / 2**5)  # 0.375
    assert mcnemar_exact_p(2, 9) == pytest.approx(2 * (1 + 11 + 55) / 2**11)
    assert mcnemar_exact_p(5, 15) == pytest.approx(two_sided_binomial(5, 20))


def test_mcnemar_is_one_for_an_even_split_and_without_discordant_pairs() -> None:
    assert mcnemar_exact_p(3, 3) == 1.0
    assert mcnemar_exact_p(1, 2) == 1.0
    assert mcnemar_exact_p(0, 0) == 1.0


def test_mcnemar_is_symmetric_in_its_arguments() -> None:
    for only_a, only_b in [(0, 5), (2, 9), (5, 15), (7, 1)]:
        assert mcnemar_exact_p(only_a, only_b) == mcnemar_exact_p(only_b, only_a)


def test_compare_paired_counts_the_four_kinds_of_image() -> None:
    correct_a = np.array([True, True, False, False, True, False, True])
    correct_b = np.array([True, False, True, False, True, True, False])

    result = compare_paired(correct_a, correct_b, resamples=200, confidence_level=0.9, seed=0)

    assert (result.images, result.both_right, result.only_a_right) == (7, 2, 2)
    assert (result.only_b_right, result.both_wrong) == (2, 1)
    assert result.top1_a == pytest.approx(4 / 7)
    assert result.top1_b == pytest.approx(4 / 7)
    assert result.difference == pytest.approx(0.0)
    assert result.mcnemar_p == 1.0
    assert (result.confidence_level, result.resamples) == (0.9, 200)


def test_compare_paired_difference_is_b_minus_a_and_p_is_the_exact_mcnemar() -> None:
    result = compare_paired(*answers(70, 5, 15, 10), resamples=1000, confidence_level=0.95, seed=1)

    assert (result.top1_a, result.top1_b) == (pytest.approx(0.75), pytest.approx(0.85))
    assert result.difference == pytest.approx(0.10)
    assert result.mcnemar_p == pytest.approx(two_sided_binomial(5, 20))
    assert result.to_dict()["only_b_right"] == 15


def test_the_bootstrap_interval_holds_the_difference_and_matches_the_normal_approximation() -> None:
    result = compare_paired(
        *answers(70, 5, 15, 10), resamples=10_000, confidence_level=0.95, seed=3
    )

    assert result.interval_low < result.difference < result.interval_high
    # Mean of 100 paired gains in {-1, 0, +1}: variance (P(+1) + P(-1) - d²) / n.
    half_width = 1.96 * sqrt((0.15 + 0.05 - 0.10**2) / 100)
    assert result.interval_low == pytest.approx(0.10 - half_width, abs=0.01)
    assert result.interval_high == pytest.approx(0.10 + half_width, abs=0.01)


def test_a_lower_confidence_level_gives_a_nested_interval() -> None:
    pair = answers(70, 5, 15, 10)
    wide = compare_paired(*pair, resamples=4000, confidence_level=0.95, seed=7)
    narrow = compare_paired(*pair, resamples=4000, confidence_level=0.5, seed=7)

    assert wide.interval_low < narrow.interval_low < narrow.interval_high < wide.interval_high


def test_the_bootstrap_is_reproducible_with_a_seed_and_changes_with_another() -> None:
    pair = answers(70, 5, 15, 10)

    def interval(seed: int) -> tuple[float, float]:
        result = compare_paired(*pair, resamples=1200, confidence_level=0.95, seed=seed)
        return result.interval_low, result.interval_high

    assert interval(11) == interval(11)
    assert len({interval(seed) for seed in range(5)}) > 1


def test_the_interval_is_degenerate_when_both_models_agree_on_every_image() -> None:
    correct = np.array([True, False, True, True, False, True])

    result = compare_paired(correct, correct.copy(), resamples=300, confidence_level=0.95, seed=2)

    assert result.difference == 0.0
    assert result.interval_low == result.interval_high == result.difference
    assert (result.only_a_right, result.only_b_right, result.mcnemar_p) == (0, 0, 1.0)


def test_no_shared_images_gives_no_scores_and_p_one() -> None:
    result = compare_paired(
        np.array([]), np.array([]), resamples=100, confidence_level=0.95, seed=0
    )

    assert result.images == result.both_right == result.both_wrong == 0
    assert result.top1_a is result.top1_b is result.difference is None
    assert result.interval_low is result.interval_high is None
    assert result.mcnemar_p == 1.0


@pytest.mark.parametrize(
    ("correct_a", "correct_b"),
    [
        ([True, False, True], [True, False]),
        ([[True, False], [False, True]], [[True, False], [False, True]]),
    ],
    ids=["different-lengths", "two-dimensional"],
)
def test_answers_that_do_not_pair_up_one_per_image_are_refused(
    correct_a: list, correct_b: list
) -> None:
    with pytest.raises(ValueError, match="one answer per shared image"):
        compare_paired(np.array(correct_a), np.array(correct_b), 100, 0.95, 0)
