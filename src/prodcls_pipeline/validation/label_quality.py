"""Suspected label errors: images whose given label a probe trained without them disbelieves.

The probe is a multinomial logistic regression on the frozen backbone's embeddings, each row
L2-normalised and then standardised (both fitted on the training folds only). Every image's
class probabilities come from the one of `folds` stratified, seeded folds that did not train on
it (out-of-fold), and cleanlab's `find_label_issues` reads those probabilities.

Classes with fewer than `folds` images are left out of the probe: with one image per fold or
fewer, some training fold lacks the class, and the probe would give its images probability 0 for
their own label and flag every one of them. Their images are neither scored nor ever suggested as
another image's label (their rows of `out_of_fold_probabilities` are NaN); the first few images of
a new class are therefore never suspects, which is the safe side of the check.

The choice, measured by `benchmarks/label_noise.py` on the Grocery Store official train+val images
(2,936, 81 fine classes; a seeded drop of a quarter of the train images with 5 % of its labels
flipped; four seeds):

- probe: L2-normalise + standardise reaches 94.6 % out-of-fold top-1 at C = 0.1 (standardising
  alone 94.4 %, L2 alone needs C = 100 for 94.9 %; PCA to 256 dimensions costs a point). The
  accuracy is far above the ~75 % of the same probe on the official test split because the train
  split holds many near-identical shots of each item, and the accepted data the probe trains on
  is exactly that. C = 0.1 is a sweet spot: C = 1 makes the probe overconfident (precision 0.90
  for random flips), C = 0.03 underconfident (recall 0.89); 10 folds gain little for twice the
  time. float32 and a tolerance of 1e-3 cut the fit several-fold (to ~4 s on 2 cores) at the
  same accuracy.
- filter: `low_self_confidence` (flag the images with the lowest probability of their given label,
  as many as cleanlab's `num_label_issues` estimates) gives precision 0.98 / recall 0.95 on random
  flips and 0.94 / 0.83 on flips within a coarse class. cleanlab's default `prune_by_noise_rate`
  gives 0.90 / 0.71, `confident_learning` 0.95 / 0.71, `low_normalized_margin` 0.96 / 0.77 and
  `predicted_neq_given` 0.54 / 1.00 (random flips). `frac_noise` below 1 collapses recall to ~0.07
  here: it shrinks each class's off-diagonal counts, and with ~1 flip per class and 81 classes
  nearly all round to 0. A minimum margin (suggested minus given probability, up to 0.5) on top
  of the prune filters raised their precision by at most 0.04 and left their recall at 0.71: what
  they lack is recall, and `low_self_confidence` has it.
- a drop of new photo sessions (test-split images added to train+val) is harder: the probe is
  ~86 % right on such a drop, and `low_self_confidence` still reached 0.84 / 0.93 (random flips).
- the cap (`max_given_probability`), measured on the six-drop history `prodcls drops --history`
  lays out (the whole dataset, so drops of new photo sessions): cleanlab alone reached 0.71 /
  1.00 on random flips, because it flags as many images as its noise estimate and the extra ones
  are look-alike classes (grapefruit and orange, two apples) whose given label the probe still
  gives 0.01-0.05, while a random flip gets at most ~0.004. A cap of 0.01 gives 0.84 / 1.00 on
  the seeds it was read from and 0.89 / 0.96 on four others (`results/label_noise_cap.json`).

Suspects are ranked worst first: lowest probability of the given label, ties by sha256.

Pure numpy/pandas/scikit-learn/cleanlab: no Kedro, no torch. Deterministic for a given seed.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self, get_args

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from prodcls_pipeline.core.numbers import round_metric
from prodcls_pipeline.core.rules import Rule, RuleParamsError

CHECK_NAME = "label_quality"
# The suspects table, as the review page and the review template read it.
SUSPECT_COLUMNS = (
    "sha256",
    "given_label",
    "suggested_label",
    "given_probability",
    "suggested_probability",
)

Policy = Literal["block", "warn"]
POLICIES = get_args(Policy)
# cleanlab's `filter_by` methods (see the module docstring for what each scored here).
FilterMethod = Literal[
    "low_self_confidence",
    "low_normalized_margin",
    "confident_learning",
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "predicted_neq_given",
]
FILTER_METHODS = get_args(FilterMethod)

# A probe needs two classes to tell apart, and K-fold needs two folds.
MIN_CLASSES = 2
MIN_FOLDS = 2
# Measured: a tolerance of 1e-3 fits in half the time of scikit-learn's 1e-4 at the same
# out-of-fold accuracy, and float32 halves it again.
PROBE_TOLERANCE = 1e-3
PROBE_DTYPE = np.float32
# cleanlab's multiprocessing forks workers per call: not worth it for a few thousand rows, and
# unwelcome inside a pipeline on shared cores.
CLEANLAB_JOBS = 1


@dataclass(frozen=True)
class _LabelQualityParams(Rule):
    """The `validate.label_quality` section of params.yaml as written (checked keys and types)."""

    params_section: ClassVar[str] = "validate.label_quality"

    folds: int
    inverse_regularization: float
    max_iterations: int
    filter_by: FilterMethod
    max_given_probability: float
    max_suspect_share: float
    policy: Policy


@dataclass(frozen=True)
class LabelQualitySettings:
    """How the probe is trained, which images cleanlab flags, and what a flagged drop does.

    `folds`: K of the stratified K-fold (a class needs at least K images to be checked).
    `inverse_regularization`: scikit-learn's C of the logistic regression. `max_iterations`: its
    solver's limit. `filter_by`: cleanlab's `find_label_issues` method. `max_given_probability`:
    an image cleanlab flags is a suspect only when the probe gives its label at most this
    probability (1 keeps every flag). `max_suspect_share`: a drop is flagged when more than this
    share of its images are suspects. `policy`: whether a flagged drop blocks or warns. `seed`:
    the fold assignment's.
    """

    folds: int
    inverse_regularization: float
    max_iterations: int
    filter_by: FilterMethod
    max_given_probability: float
    max_suspect_share: float
    policy: Policy
    seed: int

    def __post_init__(self) -> None:
        problems = []
        if self.folds < MIN_FOLDS:
            problems.append(f"folds must be >= {MIN_FOLDS}, got {self.folds}")
        if not self.inverse_regularization > 0:
            problems.append(
                f"inverse_regularization must be > 0, got {self.inverse_regularization}"
            )
        if self.max_iterations < 1:
            problems.append(f"max_iterations must be >= 1, got {self.max_iterations}")
        if self.filter_by not in FILTER_METHODS:
            problems.append(f"filter_by must be one of {FILTER_METHODS}, got {self.filter_by!r}")
        if not 0 < self.max_given_probability <= 1:
            problems.append(
                f"max_given_probability must be in (0, 1], got {self.max_given_probability}"
            )
        if not 0 <= self.max_suspect_share <= 1:
            problems.append(f"max_suspect_share must be in [0, 1], got {self.max_suspect_share}")
        if self.policy not in POLICIES:
            problems.append(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if problems:
            raise RuleParamsError(f"{_LabelQualityParams.params_section}: {'; '.join(problems)}")

    @classmethod
    def from_params(cls, section: Mapping[str, Any], seed: int) -> Self:
        """The settings of params.yaml `validate.label_quality` (every key present and known)."""
        params = _LabelQualityParams.from_params(section)
        return cls(
            folds=params.folds,
            inverse_regularization=params.inverse_regularization,
            max_iterations=params.max_iterations,
            filter_by=params.filter_by,
            max_given_probability=params.max_given_probability,
            max_suspect_share=params.max_suspect_share,
            policy=params.policy,
            seed=seed,
        )


def checked_classes(labels: Sequence[Any], settings: LabelQualitySettings) -> list[Any]:
    """The labels with at least `folds` images, sorted: the classes the probe learns and scores.

    Fewer than two such classes leave nothing to tell apart: then none is checked.
    """
    values, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    checked = [
        value for value, count in zip(values, counts, strict=True) if count >= settings.folds
    ]
    return checked if len(checked) >= MIN_CLASSES else []


def out_of_fold_probabilities(
    embeddings: np.ndarray, labels: Sequence[Any], settings: LabelQualitySettings
) -> np.ndarray:
    """Each image's class probabilities from the probe fold that did not train on it.

    Rows follow `embeddings`; columns are the sorted distinct labels (`np.unique(labels)`). Images
    of a class too rare to check (see `checked_classes`) get a NaN row, and the rare classes'
    columns are 0 elsewhere: the probe never learned them.
    """
    embeddings = np.asarray(embeddings)
    label_array = np.asarray(labels, dtype=object)
    if len(embeddings) != len(label_array):
        raise ValueError(f"{len(embeddings)} embeddings but {len(label_array)} labels")
    columns = list(np.unique(label_array))
    probabilities = np.full((len(label_array), len(columns)), np.nan)
    checked = checked_classes(label_array, settings)
    if not checked:
        return probabilities
    rows = np.flatnonzero(np.isin(label_array, checked))
    features = embeddings[rows].astype(PROBE_DTYPE)
    targets = label_array[rows]
    probabilities[rows] = 0.0
    folds = StratifiedKFold(settings.folds, shuffle=True, random_state=settings.seed)
    # Class names as integer codes: scikit-learn's stratification wants a plain label array.
    codes = np.searchsorted(np.asarray(checked, dtype=object), targets)
    for train, held_out in folds.split(features, codes):
        probe = _probe(settings).fit(features[train], codes[train])
        fold_columns = [columns.index(checked[code]) for code in probe.classes_]
        probabilities[np.ix_(rows[held_out], fold_columns)] = probe.predict_proba(
            features[held_out]
        )
    return probabilities


def find_suspects(
    sha256s: Sequence[str],
    embeddings: np.ndarray,
    labels: Sequence[Any],
    settings: LabelQualitySettings,
) -> pd.DataFrame:
    """One row per suspected label error (`SUSPECT_COLUMNS`), worst first.

    Pass every accepted image and the new drop's together (each sha256 once): the probe needs the
    accepted data to learn from, and the drop's own rows are then picked with `suspect_share`.
    """
    if len(set(sha256s)) != len(sha256s):
        # The same image in two folds would let the probe memorise it: no longer out-of-fold.
        raise ValueError("find_suspects needs each sha256 once")
    label_array = np.asarray(labels, dtype=object)
    probabilities = out_of_fold_probabilities(embeddings, label_array, settings)
    columns = np.unique(label_array)
    scored = np.flatnonzero(~np.isnan(probabilities).any(axis=1))
    if not len(scored):
        return _suspect_table([], [], [], [], [])
    checked = np.asarray(checked_classes(label_array, settings), dtype=object)
    probe_columns = np.searchsorted(columns, checked)
    scored_probabilities = probabilities[np.ix_(scored, probe_columns)]
    given = np.searchsorted(checked, label_array[scored])
    issues = find_label_issues(
        given, scored_probabilities, filter_by=settings.filter_by, n_jobs=CLEANLAB_JOBS
    )
    flagged = np.flatnonzero(issues)
    given_probability = scored_probabilities[flagged, given[flagged]]
    others = scored_probabilities[flagged].copy()
    others[np.arange(len(flagged)), given[flagged]] = -np.inf
    suggested = others.argmax(axis=1)
    table = _suspect_table(
        [sha256s[index] for index in scored[flagged]],
        list(checked[given[flagged]]),
        list(checked[suggested]),
        list(given_probability),
        list(others[np.arange(len(flagged)), suggested]),
    )
    return capped_suspects(table, settings.max_given_probability).sort_values(
        ["given_probability", "sha256"], ignore_index=True, kind="stable"
    )


def capped_suspects(suspects: pd.DataFrame, max_given_probability: float) -> pd.DataFrame:
    """The suspects whose given label the probe gives at most `max_given_probability`."""
    return suspects[suspects["given_probability"] <= max_given_probability]


def suspect_share(suspects: pd.DataFrame, drop_sha256s: Collection[str]) -> float:
    """The share of the drop's (distinct) images that are suspects; 0 for an empty drop."""
    drop = set(drop_sha256s)
    if not drop:
        return 0.0
    return float(suspects["sha256"].isin(drop).sum()) / len(drop)


def drop_suspects(suspects: pd.DataFrame, drop_sha256s: Collection[str]) -> pd.DataFrame:
    """The suspects that belong to the drop, in the same (worst-first) order."""
    return suspects[suspects["sha256"].isin(set(drop_sha256s))].reset_index(drop=True)


def label_quality_result(
    suspects: pd.DataFrame, drop_sha256s: Collection[str], settings: LabelQualitySettings
) -> dict[str, Any]:
    """The check's outcome for the report: the drop's suspect share against the threshold."""
    share = suspect_share(suspects, drop_sha256s)
    flagged = share > settings.max_suspect_share
    return {
        "name": CHECK_NAME,
        "share": round_metric(share),
        "threshold": settings.max_suspect_share,
        "flagged": flagged,
        "blocking": flagged and settings.policy == "block",
        "policy": settings.policy,
        "count": len(drop_suspects(suspects, drop_sha256s)),
        "drop_images": len(set(drop_sha256s)),
    }


def _probe(settings: LabelQualitySettings) -> Any:
    # Each row scaled to unit length first (the backbone's pooled activations vary in norm with
    # image content), then each feature standardised: both fitted on the training fold only.
    return make_pipeline(
        Normalizer(),
        StandardScaler(),
        LogisticRegression(
            C=settings.inverse_regularization,
            max_iter=settings.max_iterations,
            tol=PROBE_TOLERANCE,
        ),
    )


def _suspect_table(
    sha256s: list[str],
    given_labels: list[Any],
    suggested_labels: list[Any],
    given_probabilities: list[float],
    suggested_probabilities: list[float],
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sha256": pd.Series(sha256s, dtype="str"),
            "given_label": pd.Series(given_labels, dtype="object"),
            "suggested_label": pd.Series(suggested_labels, dtype="object"),
            "given_probability": pd.Series(given_probabilities, dtype="float64"),
            "suggested_probability": pd.Series(suggested_probabilities, dtype="float64"),
        },
        columns=list(SUSPECT_COLUMNS),
    )
