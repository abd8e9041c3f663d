"""Drift of a new drop against the data already accepted: its class mix and its images.

Three checks, each calibrated on the reference itself rather than on a guessed threshold:

- `class_chi2`: chi-squared homogeneity test of the 2×K table (reference vs drop counts per
  label); flags at p < alpha.
- `class_jensen_shannon`: Jensen–Shannon distance (base 2) of the two class-share vectors. It has
  no p-value of its own, so its threshold is the (1 − alpha) quantile of the distances of
  pseudo-drops: samples of the drop's size drawn from the reference without replacement.
- `image_mmd`: unbiased MMD² between drop and reference embeddings, RBF kernel with the median
  heuristic bandwidth, permutation p-value. It compares class for class: the drop's images of
  known classes against reference images drawn to the drop's class mix, the permutations drawn
  within classes. Embeddings cluster by class, so otherwise a new class mix (what the class
  checks are for) would read as image drift. It flags at p < alpha *and* an MMD² at least
  `min_effect` above the permutation null's (1 − alpha) quantile: photos come in sessions (one
  shelf, one light, one afternoon), so a new drop of the same products is measurably unlike the
  accepted sessions, and a test of exchangeability alone would block every fresh drop. The
  effect floor is what separates a new session from a broken camera (benchmarks/drift.py).

Every check also reports its false-alarm rate on `calibration_drops` pseudo-drops, each tested
against the rest of the reference exactly like a real drop (the MMD pseudo-tests with the fewest
permutations that resolve alpha, see `DriftSettings.calibration_permutations`).

Embeddings are used as given (no L2-normalisation), in float64: the caller decides what space
drift is measured in, and the median heuristic adapts the kernel to that space's scale.

Pure numpy/scipy: no Kedro, no torch. Deterministic for a given seed: every random draw comes from
its own numpy Generator seeded with `(seed, stream)`, so adding one draw never moves another.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self, get_args

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2, chi2_contingency

from prodcls_pipeline.core.numbers import round_metric
from prodcls_pipeline.core.rules import Rule, RuleParamsError

CLASS_CHI2 = "class_chi2"
CLASS_JENSEN_SHANNON = "class_jensen_shannon"
IMAGE_MMD = "image_mmd"
CHECK_NAMES = (CLASS_CHI2, CLASS_JENSEN_SHANNON, IMAGE_MMD)

Policy = Literal["block", "warn"]
POLICIES = get_args(Policy)

# Distances are reported in bits: the Jensen–Shannon distance then lies in [0, 1].
JS_BASE = 2
# Statistics span many scales (MMD² ~1e-3, chi² ~1e2): keep significant digits, not decimals.
STATISTIC_SIGNIFICANT_DIGITS = 4
# The unbiased MMD² estimator averages over distinct pairs: each sample needs two points.
MIN_MMD_SAMPLE = 2
# Fancy-indexed kernel blocks are gathered this many elements at a time (~32 MB of float64).
GATHER_CHUNK_ELEMENTS = 4_000_000

# Independent random streams, one per purpose (see the module docstring).
_REFERENCE_SUBSAMPLE_STREAM = 0
_DROP_SUBSAMPLE_STREAM = 1
_PERMUTATION_STREAM = 2
_CLASS_CALIBRATION_STREAM = 3
_IMAGE_CALIBRATION_POOL_STREAM = 4
_IMAGE_CALIBRATION_STREAM = 5
_CLASS_MATCH_STREAM = 6

_NO_REFERENCE = "no reference yet: the first drop has nothing to drift from"


@dataclass(frozen=True)
class _DriftParams(Rule):
    """The `validate.drift` section of params.yaml as written (checked keys and types)."""

    params_section: ClassVar[str] = "validate.drift"

    alpha: float
    permutations: int
    calibration_drops: int
    max_reference: int
    min_drop_images: int
    min_effect: float
    class_distribution: Policy
    image_distribution: Policy


@dataclass(frozen=True)
class DriftSettings:
    """How the drift checks test and what a flagged check does.

    `alpha`: significance level of every check. `permutations`: MMD permutation-test draws (the
    smallest p-value is 1/(permutations+1), so it must be below alpha). `calibration_drops`:
    pseudo-drops per check for the false-alarm estimate and the Jensen–Shannon threshold; with
    fewer than 1/alpha − 1 of them the Jensen–Shannon quantile cannot be resolved (see
    `_quantile_threshold`). `max_reference`: reference (and drop) embeddings are subsampled to at
    most this many, seeded, so the kernel matrix stays bounded. `min_drop_images`: below it the
    image check is skipped. `min_effect`: the MMD² above
    the null quantile below which a significant image difference is reported, not flagged.
    `class_policy`/`image_policy`: whether a flag blocks or warns.
    """

    alpha: float
    permutations: int
    calibration_drops: int
    max_reference: int
    min_drop_images: int
    min_effect: float
    class_policy: Policy
    image_policy: Policy
    seed: int

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.alpha < 1:
            problems.append(f"alpha must be in (0, 1), got {self.alpha}")
        if 0 < self.alpha < 1 and self.permutations < _min_permutations(self.alpha):
            problems.append(
                f"permutations must be at least {_min_permutations(self.alpha)} so a "
                f"permutation p-value can fall below alpha={self.alpha}, got {self.permutations}"
            )
        for name in ("class_policy", "image_policy"):
            if getattr(self, name) not in POLICIES:
                problems.append(f"{name} must be one of {POLICIES}, got {getattr(self, name)!r}")
        if self.calibration_drops < 0:
            problems.append(f"calibration_drops must be >= 0, got {self.calibration_drops}")
        if self.max_reference < MIN_MMD_SAMPLE:
            problems.append(f"max_reference must be >= {MIN_MMD_SAMPLE}, got {self.max_reference}")
        if self.min_drop_images < MIN_MMD_SAMPLE:
            problems.append(
                f"min_drop_images must be >= {MIN_MMD_SAMPLE}, got {self.min_drop_images}"
            )
        if self.min_effect < 0:
            problems.append(f"min_effect must be >= 0, got {self.min_effect}")
        if problems:
            raise RuleParamsError(f"{_DriftParams.params_section}: {'; '.join(problems)}")

    @property
    def calibration_permutations(self) -> int:
        """Permutations per pseudo-drop MMD test: the fewest that still resolve alpha.

        Pseudo-drops only estimate how often an in-distribution drop is flagged, and under no
        drift that rate is about alpha for any permutation count that can reach it, so paying
        `permutations` per pseudo-drop buys nothing but time.
        """
        return min(self.permutations, _min_permutations(self.alpha))

    @classmethod
    def from_params(cls, section: Mapping[str, Any], seed: int) -> Self:
        """The settings of params.yaml `validate.drift` (every key present and known) and `seed`."""
        params = _DriftParams.from_params(section)
        return cls(
            alpha=params.alpha,
            permutations=params.permutations,
            calibration_drops=params.calibration_drops,
            max_reference=params.max_reference,
            min_drop_images=params.min_drop_images,
            min_effect=params.min_effect,
            class_policy=params.class_distribution,
            image_policy=params.image_distribution,
            seed=seed,
        )


def _min_permutations(alpha: float) -> int:
    """The fewest permutations whose smallest p-value, 1/(permutations+1), is below `alpha`."""
    return math.floor(1 / alpha)


@dataclass(frozen=True)
class DriftCheck:
    """The outcome of one drift check.

    `statistic` is flagged when above `threshold` (for the p-value tests the threshold is the
    statistic at which p would reach alpha, for reading; the flag itself is p < alpha).
    `false_alarm_rate` is the share of in-reference pseudo-drops this check flagged, out of
    `calibration_drops` (None when the reference was too small to draw any). `drop_images` and
    `reference_images` count what the test compared (after subsampling, for the image check).
    A skipped check has `skipped_reason` set, no numbers, and is never flagged.
    """

    name: str
    statistic: float | None
    threshold: float | None
    p_value: float | None
    flagged: bool
    blocking: bool
    false_alarm_rate: float | None
    calibration_drops: int
    policy: Policy
    skipped_reason: str | None
    drop_images: int
    reference_images: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: statistics to significant digits, p-values and rates as metrics."""
        return {
            "name": self.name,
            "statistic": _round_statistic(self.statistic),
            "threshold": _round_statistic(self.threshold),
            "p_value": None if self.p_value is None else round_metric(self.p_value),
            "flagged": self.flagged,
            "blocking": self.blocking,
            "false_alarm_rate": (
                None if self.false_alarm_rate is None else round_metric(self.false_alarm_rate)
            ),
            "calibration_drops": self.calibration_drops,
            "policy": self.policy,
            "skipped_reason": self.skipped_reason,
            "drop_images": self.drop_images,
            "reference_images": self.reference_images,
        }


def drift_checks(
    reference_labels: Sequence[str],
    drop_labels: Sequence[str],
    reference_embeddings: np.ndarray,
    drop_embeddings: np.ndarray,
    settings: DriftSettings,
) -> list[DriftCheck]:
    """The three drift checks of a drop, in `CHECK_NAMES` order.

    Row i of each embeddings array is the image labelled by item i of its labels: the class
    checks compare label counts; the image check compares the embeddings class for class (see
    `class_matched_rows`) and permutes them within classes, so its p-value is exact for the
    question it asks.
    """
    reference_labels, drop_labels = list(reference_labels), list(drop_labels)
    if len(reference_labels) != len(reference_embeddings) or len(drop_labels) != len(
        drop_embeddings
    ):
        raise ValueError(
            f"One label per embedding row: {len(reference_labels)} reference labels for "
            f"{len(reference_embeddings)} rows, {len(drop_labels)} drop labels for "
            f"{len(drop_embeddings)} rows"
        )
    reference = np.asarray(reference_embeddings, dtype=np.float64)
    drop = np.asarray(drop_embeddings, dtype=np.float64)
    if reference_labels:
        reference_rows, drop_rows = class_matched_rows(reference_labels, drop_labels, settings)
    else:
        # Nothing to match: the check is skipped, and says how many images the drop had.
        reference_rows, drop_rows = np.zeros(0, dtype=np.intp), np.arange(len(drop))
    return [
        *_class_checks(reference_labels, drop_labels, settings),
        _image_check(
            reference,
            reference[reference_rows],
            drop[drop_rows],
            np.asarray(reference_labels, dtype=object)[reference_rows],
            np.asarray(drop_labels, dtype=object)[drop_rows],
            settings,
        ),
    ]


def class_matched_rows(
    reference_labels: Sequence[str], drop_labels: Sequence[str], settings: DriftSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Which reference and drop rows the image check compares, so that it compares like with like.

    The drop's rows are its images of classes the reference holds; the reference's are drawn
    (seeded, without replacement) so that each of those classes has the share it has in the
    drop, as many as the scarcest class allows and at most `max_reference`. Embeddings cluster by
    class, so without this a new class or a new class mix — which the class checks and the known
    labels check report — would read as image drift; with it the image check asks only whether
    each class's images look as they did.
    """
    reference = np.asarray(reference_labels, dtype=object)
    drop = np.asarray(drop_labels, dtype=object)
    known = np.isin(drop, reference)
    drop_rows = np.flatnonzero(known)
    if not len(drop_rows):
        return np.zeros(0, dtype=np.intp), drop_rows
    classes, drop_counts = np.unique(drop[drop_rows], return_counts=True)
    shares = drop_counts / drop_counts.sum()
    available = np.array([np.count_nonzero(reference == label) for label in classes])
    size = min(settings.max_reference, int(np.min(available / shares)))
    rng = _rng(settings.seed, _CLASS_MATCH_STREAM)
    taken = [
        rng.choice(np.flatnonzero(reference == label), size=count, replace=False)
        for label, count in zip(classes, np.floor(size * shares).astype(int), strict=True)
    ]
    return np.sort(np.concatenate(taken)), drop_rows


# --- class distribution -------------------------------------------------------------------------


def _class_checks(
    reference_labels: list[str], drop_labels: list[str], settings: DriftSettings
) -> list[DriftCheck]:
    sizes = {"drop_images": len(drop_labels), "reference_images": len(reference_labels)}
    names = (CLASS_CHI2, CLASS_JENSEN_SHANNON)
    if not reference_labels:
        return [_skipped(name, settings.class_policy, _NO_REFERENCE, **sizes) for name in names]
    if not drop_labels:
        reason = "the drop has no labelled images"
        return [_skipped(name, settings.class_policy, reason, **sizes) for name in names]
    labels = sorted(set(reference_labels) | set(drop_labels))
    reference_counts = _counts(reference_labels, labels)
    drop_counts = _counts(drop_labels, labels)
    pseudo = _pseudo_drop_counts(reference_labels, labels, len(drop_labels), settings)
    return [
        _chi2_check(reference_counts, drop_counts, pseudo, settings),
        _jensen_shannon_check(reference_counts, drop_counts, pseudo, settings),
    ]


def _counts(values: list[str], labels: list[str]) -> np.ndarray:
    index = {label: position for position, label in enumerate(labels)}
    return np.bincount([index[value] for value in values], minlength=len(labels))


def _pseudo_drop_counts(
    reference_labels: list[str], labels: list[str], drop_size: int, settings: DriftSettings
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rest of the reference, pseudo-drop) label counts for each pseudo-drop: `drop_size`
    reference labels drawn without replacement. Empty when the reference is not larger than
    the drop (nothing would be left to compare against)."""
    if len(reference_labels) <= drop_size or settings.calibration_drops == 0:
        return []
    rng = _rng(settings.seed, _CLASS_CALIBRATION_STREAM)
    codes = np.searchsorted(labels, reference_labels)
    total = np.bincount(codes, minlength=len(labels))
    # One draw at a time: a reference of many labels never needs a (drops × labels) key matrix.
    pseudo = [
        np.bincount(codes[rng.choice(len(codes), drop_size, replace=False)], minlength=len(labels))
        for _ in range(settings.calibration_drops)
    ]
    return [(total - counts, counts) for counts in pseudo]


def _chi2_test(reference_counts: np.ndarray, drop_counts: np.ndarray) -> tuple[float, float, int]:
    """Chi-squared homogeneity statistic, p-value and degrees of freedom of the 2×K table.

    Labels absent from both rows are dropped (they add nothing and would divide by zero). No
    Yates correction, so the statistic means the same for every K. With one label left the two
    samples cannot differ: statistic 0, p-value 1.
    """
    table = np.vstack([reference_counts, drop_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue), int(result.dof)


def _chi2_check(
    reference_counts: np.ndarray,
    drop_counts: np.ndarray,
    pseudo: list[tuple[np.ndarray, np.ndarray]],
    settings: DriftSettings,
) -> DriftCheck:
    statistic, p_value, dof = _chi2_test(reference_counts, drop_counts)
    pseudo_p = [_chi2_test(rest, counts)[1] for rest, counts in pseudo]
    return _tested(
        CLASS_CHI2,
        statistic,
        float(chi2.isf(settings.alpha, dof)) if dof else None,
        p_value,
        _flag_rate([p < settings.alpha for p in pseudo_p]),
        len(pseudo),
        settings.class_policy,
        settings,
        drop_images=int(drop_counts.sum()),
        reference_images=int(reference_counts.sum()),
    )


def _js_distance(reference_counts: np.ndarray, drop_counts: np.ndarray) -> float:
    """Jensen–Shannon distance (base 2) of the two class-share vectors."""
    return float(
        jensenshannon(
            reference_counts / reference_counts.sum(), drop_counts / drop_counts.sum(), JS_BASE
        )
    )


def _jensen_shannon_check(
    reference_counts: np.ndarray,
    drop_counts: np.ndarray,
    pseudo: list[tuple[np.ndarray, np.ndarray]],
    settings: DriftSettings,
) -> DriftCheck:
    sizes = {
        "drop_images": int(drop_counts.sum()),
        "reference_images": int(reference_counts.sum()),
    }
    if not pseudo:
        reason = "no pseudo-drops to calibrate on: the reference is not larger than the drop"
        return _skipped(CLASS_JENSEN_SHANNON, settings.class_policy, reason, **sizes)
    distance = _js_distance(reference_counts, drop_counts)
    calibration = np.array([_js_distance(rest, counts) for rest, counts in pseudo])
    threshold = _quantile_threshold(calibration, settings.alpha)
    # Each pseudo-drop judged against a threshold from the others: the rate a real drop sees.
    held_out = [
        value > _quantile_threshold(np.delete(calibration, index), settings.alpha)
        for index, value in enumerate(calibration)
        if len(calibration) > 1
    ]
    return _tested(
        CLASS_JENSEN_SHANNON,
        distance,
        threshold,
        _empirical_p_value(distance, calibration),
        _flag_rate(held_out),
        len(pseudo),
        settings.class_policy,
        settings,
        flagged=distance > threshold,
        **sizes,
    )


def _quantile_threshold(values: np.ndarray, alpha: float) -> float:
    """The (1 − alpha) quantile of `values`, rounded up to an observed value.

    With n values a quantile above n/(n+1) cannot be resolved: the threshold is then the
    largest value, and a check flagging above it has a false-alarm rate of about 1/(n+1), not
    alpha. That rate is what `false_alarm_rate` reports; raise `calibration_drops` to at least
    1/alpha − 1 for an alpha-level check.
    """
    return float(np.quantile(values, 1 - alpha, method="higher"))


def _empirical_p_value(statistic: float, null: np.ndarray) -> float:
    """Share of null draws at least as extreme, counting the observation itself."""
    return float((1 + np.count_nonzero(null >= statistic)) / (1 + len(null)))


# --- image distribution -------------------------------------------------------------------------


def _image_check(
    accepted: np.ndarray,
    reference: np.ndarray,
    drop: np.ndarray,
    reference_labels: np.ndarray,
    drop_labels: np.ndarray,
    settings: DriftSettings,
) -> DriftCheck:
    sizes = {"drop_images": len(drop), "reference_images": len(reference)}
    policy = settings.image_policy
    if len(reference) == 0:
        return _skipped(IMAGE_MMD, policy, _NO_REFERENCE, **sizes)
    if len(drop) < settings.min_drop_images:
        reason = f"{len(drop)} drop images, fewer than min_drop_images={settings.min_drop_images}"
        return _skipped(IMAGE_MMD, policy, reason, **sizes)
    if len(reference) < MIN_MMD_SAMPLE:
        reason = f"{len(reference)} reference image(s): MMD² needs at least {MIN_MMD_SAMPLE}"
        return _skipped(IMAGE_MMD, policy, reason, **sizes)
    if reference.ndim != 2 or drop.ndim != 2 or reference.shape[1] != drop.shape[1]:
        raise ValueError(
            f"Embeddings must be 2-D with one width; got {reference.shape} and {drop.shape}"
        )
    cap = settings.max_reference
    reference_rows = _subsample(
        np.arange(len(reference)), cap, _rng(settings.seed, _REFERENCE_SUBSAMPLE_STREAM)
    )
    drop_rows = _subsample(np.arange(len(drop)), cap, _rng(settings.seed, _DROP_SUBSAMPLE_STREAM))
    reference_sample, drop_sample = reference[reference_rows], drop[drop_rows]
    permutation_rng = _rng(settings.seed, _PERMUTATION_STREAM)
    statistic, null_quantile, p_value = _mmd_test(
        np.vstack([drop_sample, reference_sample]),
        len(drop_sample),
        np.concatenate([drop_labels[drop_rows], reference_labels[reference_rows]]),
        settings,
        permutation_rng,
    )
    threshold = image_threshold(null_quantile, settings)
    # Pseudo-drops come from all the accepted data, as a drop of its own mix would.
    pseudo_flags = _mmd_calibration(accepted, len(drop_sample), settings)
    return _tested(
        IMAGE_MMD,
        statistic,
        threshold,
        p_value,
        _flag_rate(pseudo_flags),
        len(pseudo_flags),
        policy,
        settings,
        drop_images=len(drop_sample),
        reference_images=len(reference_sample),
        flagged=image_flagged(statistic, null_quantile, p_value, settings),
    )


def image_threshold(null_quantile: float, settings: DriftSettings) -> float:
    """The MMD² an image check must exceed: the null's (1 - alpha) quantile plus `min_effect`."""
    return null_quantile + settings.min_effect


def image_flagged(
    statistic: float, null_quantile: float, p_value: float, settings: DriftSettings
) -> bool:
    """Significant (p < alpha) and large (above the null quantile by `min_effect`)."""
    return p_value < settings.alpha and statistic > image_threshold(null_quantile, settings)


def _mmd_calibration(reference: np.ndarray, drop_size: int, settings: DriftSettings) -> list[bool]:
    """Whether the image check flags each pseudo-drop of `drop_size` reference embeddings, each
    tested against the rest of a pool drawn so that the rest is as large as a real drop's
    reference.

    The pool's kernel matrix (and so the median-heuristic bandwidth of every pseudo-test, whose
    pooled sample is the pool) is computed once; each pseudo-drop only relabels its rows.
    """
    pool_size = min(len(reference), settings.max_reference + drop_size)
    if pool_size - drop_size < MIN_MMD_SAMPLE or settings.calibration_drops == 0:
        return []
    pool = _subsample(reference, pool_size, _rng(settings.seed, _IMAGE_CALIBRATION_POOL_STREAM))
    kernel = _PooledKernel(_rbf_kernel(pool))
    rng = _rng(settings.seed, _IMAGE_CALIBRATION_STREAM)
    members = _random_subsets(rng, pool_size, drop_size, settings.calibration_drops)
    permutations = settings.calibration_permutations
    flags = []
    for rows in members:
        statistic, null_quantile, p_value = _permutation_test(
            kernel, rows, permutations, settings.alpha, rng
        )
        flags.append(image_flagged(statistic, null_quantile, p_value, settings))
    return flags


def _mmd_test(
    pooled: np.ndarray,
    drop_size: int,
    strata: np.ndarray,
    settings: DriftSettings,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """MMD² of rows [:drop_size] vs the rest, the statistic at p = alpha, and the p-value, the
    permutations drawn within each stratum (class) of `strata`."""
    kernel = _PooledKernel(_rbf_kernel(pooled))
    return _permutation_test(
        kernel, np.arange(drop_size), settings.permutations, settings.alpha, rng, strata
    )


def _rbf_kernel(points: np.ndarray) -> np.ndarray:
    """exp(-d² / 2σ²) over all pairs, σ the median pairwise distance ("median heuristic").

    If more than half the pairs coincide the median is 0; then the mean nonzero distance is the
    scale (and 1 if every point is the same), so the kernel never divides by zero.
    """
    squared_norms = np.einsum("ij,ij->i", points, points)
    squared = squared_norms[:, None] + squared_norms[None, :] - 2 * points @ points.T
    np.maximum(squared, 0, out=squared)
    np.fill_diagonal(squared, 0)
    distances = np.sqrt(squared[np.triu_indices(len(points), k=1)])
    bandwidth = float(np.median(distances)) if len(distances) else 0.0
    if bandwidth == 0:
        nonzero = distances[distances > 0]
        bandwidth = float(nonzero.mean()) if len(nonzero) else 1.0
    squared /= -2 * bandwidth**2
    return np.exp(squared, out=squared)


class _PooledKernel:
    """The kernel matrix of a pooled sample, with the sums every split of it reuses.

    The unbiased MMD² of a split needs the sums of its within-side and cross blocks. Only the
    block of one side is gathered; the cross and other-side sums follow from the row sums and
    the total, so a permutation costs O(side²), not O(pooled²).
    """

    def __init__(self, kernel: np.ndarray) -> None:
        self.kernel = kernel
        self.row_sums = kernel.sum(axis=1)
        self.total = float(self.row_sums.sum())
        self.diagonal = np.diag(kernel).copy()
        self.diagonal_total = float(self.diagonal.sum())

    def __len__(self) -> int:
        return len(self.kernel)

    def mmd2(self, groups: np.ndarray) -> np.ndarray:
        """Unbiased MMD² of each split: row i of `groups` holds the indices of one side, the
        other side is every other index."""
        # Sorted indices read the kernel in memory order: the gather runs ~1.5x faster.
        groups = np.sort(groups, axis=1)
        side = groups.shape[1]
        other = len(self) - side
        chunk = max(1, GATHER_CHUNK_ELEMENTS // (side * side))
        within = np.concatenate(
            [
                self.kernel[part[:, :, None], part[:, None, :]].sum(axis=(1, 2))
                for part in np.array_split(groups, math.ceil(len(groups) / chunk))
            ]
        )
        to_all = self.row_sums[groups].sum(axis=1)
        across = to_all - within
        within_other = self.total - 2 * to_all + within
        diagonal_side = self.diagonal[groups].sum(axis=1)
        diagonal_other = self.diagonal_total - diagonal_side
        side_term = (within - diagonal_side) / (side * (side - 1))
        other_term = (within_other - diagonal_other) / (other * (other - 1))
        return side_term + other_term - 2 * across / (side * other)


def _permutation_test(
    kernel: _PooledKernel,
    drop_rows: np.ndarray,
    permutations: int,
    alpha: float,
    rng: np.random.Generator,
    strata: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Unbiased MMD² of rows `drop_rows` vs the other rows of the pooled `kernel`, against
    `permutations` random relabellings: (statistic, null (1 - alpha) quantile, p-value).

    With `strata`, each relabelling keeps every stratum's count on each side, as the observed
    split has it."""
    size = len(kernel)
    # MMD² is symmetric in its two samples, so only the smaller side's block is gathered.
    small = min(len(drop_rows), size - len(drop_rows))
    observed = drop_rows if len(drop_rows) == small else np.setdiff1d(np.arange(size), drop_rows)
    if strata is None:
        null_groups = _random_subsets(rng, size, small, permutations)
    else:
        null_groups = _stratified_subsets(rng, strata, observed, permutations)
    statistics = kernel.mmd2(np.vstack([observed[None, :], null_groups]))
    statistic, null = float(statistics[0]), statistics[1:]
    return statistic, _quantile_threshold(null, alpha), _empirical_p_value(statistic, null)


# --- shared -------------------------------------------------------------------------------------


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _random_subsets(rng: np.random.Generator, size: int, count: int, draws: int) -> np.ndarray:
    """`draws` rows of `count` distinct indices in range(size), each row uniformly random."""
    if draws == 0:
        return np.zeros((0, count), dtype=np.intp)
    keys = rng.random((draws, size))
    if count == size:
        return np.argsort(keys, axis=1)
    return np.argpartition(keys, count - 1, axis=1)[:, :count]


def _stratified_subsets(
    rng: np.random.Generator, strata: np.ndarray, observed: np.ndarray, draws: int
) -> np.ndarray:
    """`draws` rows of indices, each with as many indices of every stratum as `observed` has,
    drawn uniformly within the stratum."""
    parts = []
    for stratum in np.unique(strata[observed]):
        members = np.flatnonzero(strata == stratum)
        count = int(np.count_nonzero(strata[observed] == stratum))
        parts.append(members[_random_subsets(rng, len(members), count, draws)])
    return np.hstack(parts) if parts else np.zeros((draws, 0), dtype=np.intp)


def _subsample(rows: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """At most `cap` of `rows`, drawn without replacement, kept in their original order."""
    if len(rows) <= cap:
        return rows
    return rows[np.sort(rng.choice(len(rows), size=cap, replace=False))]


def _flag_rate(flags: Sequence[bool] | Sequence[np.bool_]) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def _tested(
    name: str,
    statistic: float,
    threshold: float | None,
    p_value: float,
    false_alarm_rate: float | None,
    calibration_drops: int,
    policy: Policy,
    settings: DriftSettings,
    drop_images: int,
    reference_images: int,
    flagged: bool | None = None,
) -> DriftCheck:
    """A check that ran: flagged at p < alpha unless the caller decided otherwise."""
    is_flagged = bool(p_value < settings.alpha) if flagged is None else bool(flagged)
    return DriftCheck(
        name=name,
        statistic=statistic,
        threshold=threshold,
        p_value=p_value,
        flagged=is_flagged,
        blocking=is_flagged and policy == "block",
        false_alarm_rate=false_alarm_rate,
        calibration_drops=calibration_drops,
        policy=policy,
        skipped_reason=None,
        drop_images=drop_images,
        reference_images=reference_images,
    )


def _skipped(
    name: str, policy: Policy, reason: str, drop_images: int, reference_images: int
) -> DriftCheck:
    return DriftCheck(
        name=name,
        statistic=None,
        threshold=None,
        p_value=None,
        flagged=False,
        blocking=False,
        false_alarm_rate=None,
        calibration_drops=0,
        policy=policy,
        skipped_reason=reason,
        drop_images=drop_images,
        reference_images=reference_images,
    )


def _round_statistic(value: float | None) -> float | None:
    if value is None:
        return None
    return float(f"{value:.{STATISTIC_SIGNIFICANT_DIGITS}g}")
