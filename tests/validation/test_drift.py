"""Drift checks of a drop against the reference: class mix (chi², Jensen–Shannon), images (MMD²)."""

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from prodcls_pipeline.core.rules import RuleParamsError
from prodcls_pipeline.validation.drift import (
    CHECK_NAMES,
    CLASS_CHI2,
    CLASS_JENSEN_SHANNON,
    IMAGE_MMD,
    DriftCheck,
    DriftSettings,
    drift_checks,
)

SETTINGS = DriftSettings(
    alpha=0.01,
    permutations=200,
    calibration_drops=20,
    max_reference=300,
    min_drop_images=20,
    min_effect=0.0,
    class_policy="warn",
    image_policy="block",
    seed=7,
)
PARAMS_SECTION = {
    "alpha": 0.01,
    "permutations": 200,
    "calibration_drops": 20,
    "max_reference": 300,
    "min_drop_images": 20,
    "min_effect": 0.0,
    "class_distribution": "warn",
    "image_distribution": "block",
}
CLASSES = [f"class-{index}" for index in range(8)]
DIMENSIONS = 16
REFERENCE_SIZE = 400
DROP_SIZE = 60


def labels(rng: np.random.Generator, size: int, shares: list[float] | None = None) -> list[str]:
    return list(rng.choice(CLASSES, size=size, p=shares))


def gaussian(rng: np.random.Generator, size: int, shift: float = 0.0) -> np.ndarray:
    return rng.normal(loc=shift, size=(size, DIMENSIONS))


def in_distribution(data_seed: int) -> list[DriftCheck]:
    rng = np.random.default_rng(data_seed)
    return drift_checks(
        labels(rng, REFERENCE_SIZE),
        labels(rng, DROP_SIZE),
        gaussian(rng, REFERENCE_SIZE),
        gaussian(rng, DROP_SIZE),
        SETTINGS,
    )


def by_name(checks: list[DriftCheck]) -> dict[str, DriftCheck]:
    assert [check.name for check in checks] == list(CHECK_NAMES)
    return {check.name: check for check in checks}


def test_same_distribution_is_not_flagged_and_its_p_values_are_not_small() -> None:
    runs = [in_distribution(data_seed) for data_seed in range(10)]
    for checks in runs[:3]:
        assert not any(check.flagged or check.blocking for check in checks)
        assert all(check.skipped_reason is None for check in checks)
    # Under no drift a p-value is uniform on [0, 1]: any one may be small, their mean is ~0.5.
    for name in CHECK_NAMES:
        p_values = [by_name(checks)[name].p_value for checks in runs]
        assert np.mean(p_values) > 0.25, (name, p_values)


def test_a_mean_shifted_drop_is_flagged_by_mmd_and_blocks() -> None:
    rng = np.random.default_rng(1)
    reference_labels = labels(rng, REFERENCE_SIZE)
    checks = by_name(
        drift_checks(
            reference_labels,
            reference_labels[:DROP_SIZE],
            gaussian(rng, REFERENCE_SIZE),
            gaussian(rng, DROP_SIZE, shift=0.5),
            SETTINGS,
        )
    )
    mmd = checks[IMAGE_MMD]
    assert mmd.flagged and mmd.blocking and mmd.policy == "block"
    assert mmd.p_value == pytest.approx(1 / (SETTINGS.permutations + 1))
    assert mmd.statistic > mmd.threshold > 0
    # The reference is drawn to the drop's class mix: as many as its scarcest class allows.
    assert mmd.drop_images == DROP_SIZE
    assert DROP_SIZE < mmd.reference_images <= SETTINGS.max_reference
    assert not checks[CLASS_CHI2].flagged and not checks[CLASS_JENSEN_SHANNON].flagged


def test_a_significant_image_difference_below_the_effect_floor_is_reported_not_flagged() -> None:
    rng = np.random.default_rng(1)
    reference_labels = labels(rng, REFERENCE_SIZE)
    reference, drop = gaussian(rng, REFERENCE_SIZE), gaussian(rng, DROP_SIZE, shift=0.5)

    def image_check(settings: DriftSettings) -> DriftCheck:
        checks = drift_checks(
            reference_labels, reference_labels[:DROP_SIZE], reference, drop, settings
        )
        return by_name(checks)[IMAGE_MMD]

    plain = image_check(SETTINGS)
    floor = 2 * (plain.statistic - plain.threshold)
    floored = image_check(DriftSettings(**{**vars(SETTINGS), "min_effect": floor}))
    assert plain.flagged and plain.blocking
    assert floored.p_value == plain.p_value < SETTINGS.alpha
    assert floored.statistic == plain.statistic
    assert floored.threshold == pytest.approx(plain.threshold + floor)
    assert not floored.flagged and not floored.blocking


def test_a_very_different_class_mix_is_flagged_by_chi2_and_jensen_shannon() -> None:
    rng = np.random.default_rng(2)
    skewed = [0.45, 0.45] + [0.1 / 6] * 6
    checks = by_name(
        drift_checks(
            labels(rng, REFERENCE_SIZE),
            labels(rng, DROP_SIZE, skewed),
            gaussian(rng, REFERENCE_SIZE),
            gaussian(rng, DROP_SIZE),
            SETTINGS,
        )
    )
    chi2_check, js_check = checks[CLASS_CHI2], checks[CLASS_JENSEN_SHANNON]
    assert chi2_check.flagged and chi2_check.p_value < 1e-6
    assert chi2_check.statistic > chi2_check.threshold
    assert js_check.flagged and js_check.statistic > js_check.threshold
    assert js_check.p_value == pytest.approx(1 / (SETTINGS.calibration_drops + 1))
    # Policy `warn`: flagged, reported, not blocking.
    assert not chi2_check.blocking and not js_check.blocking
    assert not checks[IMAGE_MMD].flagged


def test_jensen_shannon_distance_matches_a_hand_computation() -> None:
    reference = ["a"] * 6 + ["b"] * 3 + ["c"] * 1
    drop = ["a"] * 1 + ["b"] * 1 + ["d"] * 2
    # Shares over the union (a, b, c, d); M is their mean; JS = sqrt of the mean KL to M, base 2.
    p = np.array([0.6, 0.3, 0.1, 0.0])
    q = np.array([0.25, 0.25, 0.0, 0.5])
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        return sum(xi * math.log2(xi / mi) for xi, mi in zip(x, m, strict=True) if xi > 0)

    expected = math.sqrt((kl(p) + kl(q)) / 2)
    rng = np.random.default_rng(2)
    embeddings = gaussian(rng, len(reference)), gaussian(rng, len(drop))
    check = by_name(drift_checks(reference, drop, *embeddings, SETTINGS))[CLASS_JENSEN_SHANNON]
    assert check.statistic == pytest.approx(expected, rel=1e-12)
    assert 0 < expected < 1


@pytest.mark.parametrize(("drop_size", "reference_size"), [(5, 7), (7, 5)])
def test_mmd_statistic_is_the_unbiased_estimate_with_the_median_bandwidth(
    drop_size: int, reference_size: int
) -> None:
    rng = np.random.default_rng(3)
    drop, reference = gaussian(rng, drop_size), gaussian(rng, reference_size, shift=0.3)
    pooled = np.vstack([drop, reference])
    distances = cdist(pooled, pooled)
    bandwidth = np.median(distances[np.triu_indices(len(pooled), k=1)])
    kernel = np.exp(-(distances**2) / (2 * bandwidth**2))
    xx = kernel[:drop_size, :drop_size]
    yy = kernel[drop_size:, drop_size:]
    xy = kernel[:drop_size, drop_size:]
    expected = (
        (xx.sum() - np.trace(xx)) / (drop_size * (drop_size - 1))
        + (yy.sum() - np.trace(yy)) / (reference_size * (reference_size - 1))
        - 2 * xy.mean()
    )
    settings = DriftSettings(**{**vars(SETTINGS), "min_drop_images": 2})
    one_class = ["a"] * reference_size, ["a"] * drop_size
    check = by_name(drift_checks(*one_class, reference, drop, settings))[IMAGE_MMD]
    assert check.statistic == pytest.approx(expected, rel=1e-9)


def test_a_new_class_mix_is_class_drift_not_image_drift() -> None:
    rng = np.random.default_rng(9)
    centres = {label: rng.normal(scale=3.0, size=DIMENSIONS) for label in CLASSES}

    def clustered(names: list[str]) -> np.ndarray:
        return np.array([centres[name] + rng.normal(size=DIMENSIONS) for name in names])

    reference = labels(rng, REFERENCE_SIZE)
    # Two classes make 90 % of the drop, and a class the reference never had comes in.
    skewed = list(rng.choice(CLASSES[:2], size=DROP_SIZE - 6)) + ["new-class"] * 6
    centres["new-class"] = rng.normal(scale=3.0, size=DIMENSIONS)
    checks = by_name(
        drift_checks(reference, skewed, clustered(reference), clustered(skewed), SETTINGS)
    )
    assert checks[CLASS_CHI2].flagged
    mmd = checks[IMAGE_MMD]
    assert not mmd.flagged and mmd.p_value > SETTINGS.alpha
    assert mmd.drop_images == DROP_SIZE - 6


def test_p_values_and_rates_lie_in_the_unit_interval() -> None:
    rng = np.random.default_rng(4)
    scenarios = [
        in_distribution(5),
        drift_checks(
            labels(rng, REFERENCE_SIZE),
            ["class-0"] * DROP_SIZE,
            gaussian(rng, REFERENCE_SIZE),
            gaussian(rng, DROP_SIZE, shift=2.0),
            SETTINGS,
        ),
    ]
    for checks in scenarios:
        for check in checks:
            assert 0 <= check.p_value <= 1, check
            assert 0 <= check.false_alarm_rate <= 1, check
            assert check.calibration_drops == SETTINGS.calibration_drops


def test_results_depend_only_on_the_inputs_and_the_seed() -> None:
    first, again = in_distribution(6), in_distribution(6)
    assert [check.as_dict() for check in first] == [check.as_dict() for check in again]
    rng = np.random.default_rng(6)
    inputs = (
        labels(rng, REFERENCE_SIZE),
        labels(rng, DROP_SIZE),
        gaussian(rng, REFERENCE_SIZE),
        gaussian(rng, DROP_SIZE),
    )
    reseeded = drift_checks(*inputs, DriftSettings(**{**vars(SETTINGS), "seed": 8}))
    # Another seed draws other pseudo-drops and permutations: the p-values move.
    assert [check.p_value for check in reseeded] != [check.p_value for check in first]


def test_the_first_drop_has_no_reference_and_every_check_is_skipped() -> None:
    rng = np.random.default_rng(7)
    checks = drift_checks(
        [], labels(rng, DROP_SIZE), np.zeros((0, DIMENSIONS)), gaussian(rng, DROP_SIZE), SETTINGS
    )
    assert [check.name for check in checks] == list(CHECK_NAMES)
    for check in checks:
        assert check.skipped_reason and "first drop" in check.skipped_reason
        assert not check.flagged and not check.blocking
        assert check.statistic is None and check.p_value is None
        assert check.reference_images == 0 and check.drop_images == DROP_SIZE


def test_false_alarm_rate_on_in_distribution_data_is_small() -> None:
    checks = by_name(in_distribution(8))
    for name, check in checks.items():
        assert check.false_alarm_rate is not None, name
        assert check.false_alarm_rate <= 0.1, (name, check.false_alarm_rate)


def test_a_drop_below_min_drop_images_skips_only_the_image_check() -> None:
    rng = np.random.default_rng(9)
    small = SETTINGS.min_drop_images - 1
    checks = by_name(
        drift_checks(
            labels(rng, REFERENCE_SIZE),
            labels(rng, small),
            gaussian(rng, REFERENCE_SIZE),
            gaussian(rng, small, shift=5.0),
            SETTINGS,
        )
    )
    mmd = checks[IMAGE_MMD]
    assert mmd.skipped_reason and "min_drop_images=20" in mmd.skipped_reason
    assert not mmd.flagged and mmd.statistic is None
    assert checks[CLASS_CHI2].skipped_reason is None
    assert checks[CLASS_JENSEN_SHANNON].skipped_reason is None


def test_as_dict_is_json_ready_and_rounded() -> None:
    rng = np.random.default_rng(10)
    checks = drift_checks(
        labels(rng, REFERENCE_SIZE),
        labels(rng, DROP_SIZE),
        gaussian(rng, REFERENCE_SIZE),
        gaussian(rng, DROP_SIZE, shift=1.0),
        SETTINGS,
    )
    rows = json.loads(json.dumps([check.as_dict() for check in checks]))
    assert [row["name"] for row in rows] == list(CHECK_NAMES)
    mmd = rows[2]
    assert mmd["flagged"] is True and mmd["blocking"] is True and mmd["skipped_reason"] is None
    assert mmd["p_value"] == round(mmd["p_value"], 4)
    assert mmd["statistic"] == float(f"{checks[2].statistic:.4g}")


def test_settings_come_from_the_params_section_and_the_seed() -> None:
    assert DriftSettings.from_params(PARAMS_SECTION, seed=7) == SETTINGS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"alpah": 0.01}, "unknown alpah"),
        ({"image_distribution": "stop"}, "image_distribution must be one of"),
        ({"permutations": 50}, "permutations must be at least 100"),
        ({"alpha": 1.5}, "alpha must be in"),
        ({"min_drop_images": 1}, "min_drop_images must be >= 2"),
        ({"min_effect": -0.1}, "min_effect must be >= 0"),
    ],
)
def test_bad_params_are_refused_with_the_key_named(change: dict, message: str) -> None:
    section = {**PARAMS_SECTION, **change}
    if "alpah" in change:
        del section["alpha"]
    with pytest.raises(RuleParamsError, match=message):
        DriftSettings.from_params(section, seed=7)
