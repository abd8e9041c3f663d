"""The checks of what a drop's images look like and say, beyond the manifest's contract.

Run on the reviewed manifest (the reviewer's decisions applied) against the data already
accepted (the last validated manifest):

- drift: each new drop's class mix and images against the accepted data (`drift`);
- suspected label errors among the new drops' images, from a probe trained out-of-fold on the
  accepted and new images together (`label_quality`);
- near-duplicates with a new image on one side: two labels on one picture, or one picture on
  both sides of the test split (`duplicates`).

Each outcome becomes one check of the validation report (`Check`): blocking checks fail the gate,
flagged checks whose policy is `warn` pass with a warning. Images a reviewer has kept or
relabelled are not flagged again. A new drop is a drop id the accepted data does not hold; on the
first run every drop is new and drift has nothing to compare with.

Pure pandas/numpy: embeddings come from the caller's `embed(sha256s)`; no Kedro, no torch.
"""

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd

from prodcls_pipeline.core.numbers import round_metric
from prodcls_pipeline.core.schema import OK
from prodcls_pipeline.validation.checks import Check
from prodcls_pipeline.validation.drift import (
    CLASS_CHI2,
    CLASS_JENSEN_SHANNON,
    IMAGE_MMD,
    DriftCheck,
    DriftSettings,
    drift_checks,
)
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
from prodcls_pipeline.validation.label_quality import (
    SUSPECT_COLUMNS,
    LabelQualitySettings,
    drop_suspects,
    find_suspects,
    label_quality_result,
)

Embed = Callable[[Sequence[str]], np.ndarray]

# What each drift check tests, as the report's "test" column shows it.
DRIFT_TESTS = {
    CLASS_CHI2: "chi-squared homogeneity test of class counts",
    CLASS_JENSEN_SHANNON: "Jensen-Shannon distance of class shares, calibrated threshold",
    IMAGE_MMD: "MMD² of frozen-backbone embeddings, permutation test",
}
LABEL_QUALITY_TEST = "cleanlab find_label_issues on out-of-fold probe probabilities"
DUPLICATES_TEST = "cosine similarity of frozen-backbone embeddings"


@dataclass(frozen=True)
class QualitySettings:
    """The `drift`, `label_quality` and `duplicates` subsections of params.yaml `validate:`."""

    drift: DriftSettings
    label_quality: LabelQualitySettings
    duplicates: DuplicateSettings

    @classmethod
    def from_params(cls, validate: Mapping[str, Any], seed: int) -> Self:
        return cls(
            drift=DriftSettings.from_params(validate["drift"], seed),
            label_quality=LabelQualitySettings.from_params(validate["label_quality"], seed),
            duplicates=DuplicateSettings.from_params(validate["duplicates"]),
        )


@dataclass(frozen=True)
class QualityFindings:
    """The checks for the report, the sections that detail them, and the tables to review."""

    checks: list[Check]
    sections: dict[str, Any]
    # The new drops' unreviewed suspects (worst first) and problem pairs (conflicts, leaks).
    suspects: pd.DataFrame
    pairs: pd.DataFrame


def quality_checks(
    reviewed_manifest: pd.DataFrame,
    accepted: pd.DataFrame,
    embed: Embed,
    split_of: Mapping[str, str],
    reviewed: Collection[str],
    settings: QualitySettings,
) -> QualityFindings:
    """Drift per new drop, suspected label errors and near-duplicates (see the module docstring).

    `reviewed_manifest`: the manifest after the review; `accepted`: the last validated manifest
    (empty on the first run); `split_of`: each current image's split; `reviewed`: the sha256s a
    person has decided on.
    """
    ok_rows = reviewed_manifest[reviewed_manifest["status"] == OK]
    current = ok_rows.drop_duplicates("sha256").sort_values("sha256", ignore_index=True)
    accepted = _accepted_images(accepted)
    new_drops = _new_drops(ok_rows, accepted)
    images_of = {
        drop: ok_rows.loc[ok_rows["drop"] == drop, ["sha256", "label"]].drop_duplicates("sha256")
        for drop in new_drops
    }
    sha256s = current["sha256"].tolist()
    embeddings = embed(sha256s)
    # The reference is the accepted images as the review left them (relabelled, or excluded).
    is_reference = current["sha256"].isin(set(accepted["sha256"]))
    reference_labels = current.loc[is_reference, "label"].tolist()
    reference_embeddings = embeddings[is_reference.to_numpy()]
    row_of = {sha256: row for row, sha256 in enumerate(sha256s)}

    checks: list[Check] = []
    drift_section = []
    for drop in new_drops:
        drop_labels = images_of[drop]["label"].tolist()
        drop_embeddings = embeddings[[row_of[sha256] for sha256 in images_of[drop]["sha256"]]]
        outcomes = drift_checks(
            reference_labels, drop_labels, reference_embeddings, drop_embeddings, settings.drift
        )
        checks += [_drift_check(drop, outcome, settings.drift.alpha) for outcome in outcomes]
        drift_section.append({"drop": drop, "checks": [outcome.as_dict() for outcome in outcomes]})

    all_suspects = find_suspects(
        sha256s, embeddings, current["label"].tolist(), settings.label_quality
    )
    unreviewed = all_suspects[~all_suspects["sha256"].isin(set(reviewed))]
    label_section = []
    for drop in new_drops:
        drop_sha256s = images_of[drop]["sha256"].tolist()
        result = label_quality_result(unreviewed, drop_sha256s, settings.label_quality)
        result = {"drop": drop, **result}
        label_section.append(result)
        checks.append(_label_check(result, drop_suspects(unreviewed, drop_sha256s)))
    # A re-delivered image was accepted already: its pairs were judged when it first came.
    delivered = set().union(*(set(images["sha256"]) for images in images_of.values()))
    new_sha256s = delivered - set(accepted["sha256"])
    suspects = drop_suspects(unreviewed, new_sha256s)

    pairs = near_duplicates(sha256s, embeddings, settings.duplicates.threshold)
    involved = pairs["sha256_a"].isin(new_sha256s) | pairs["sha256_b"].isin(new_sha256s)
    silenced = pairs["sha256_a"].isin(set(reviewed)) | pairs["sha256_b"].isin(set(reviewed))
    pairs = pairs[involved & ~silenced].reset_index(drop=True)
    label_of = dict(zip(current["sha256"], current["label"], strict=True))
    conflicts = label_conflicts(pairs, label_of)
    leaks = split_leaks(pairs, split_of)
    duplicates = duplicates_result(pairs, conflicts, leaks, settings.duplicates)
    checks += _duplicate_checks(duplicates, conflicts, leaks)
    problem_pairs = _problem_pairs(conflicts, leaks, label_of, split_of)

    return QualityFindings(
        checks=checks,
        sections={
            "new_drops": new_drops,
            "drift": drift_section,
            "label_quality": {"drops": label_section, "suspects": _records(suspects)},
            "duplicates": {
                **duplicates,
                "conflicting_pairs": _records(conflicts),
                "leaking_pairs": _records(leaks),
            },
        },
        suspects=suspects,
        pairs=problem_pairs,
    )


def _accepted_images(accepted: pd.DataFrame) -> pd.DataFrame:
    if accepted.empty:
        return pd.DataFrame({"sha256": pd.Series(dtype="str"), "label": pd.Series(dtype="str")})
    return accepted[["sha256", "label", "drop"]].drop_duplicates("sha256").reset_index(drop=True)


def _new_drops(ok_rows: pd.DataFrame, accepted: pd.DataFrame) -> list[str]:
    known = set(accepted["drop"]) if "drop" in accepted else set()
    return sorted(set(ok_rows["drop"]) - known)


def _drift_check(drop: str, outcome: DriftCheck, alpha: float) -> Check:
    name = f"drift {outcome.name} ({drop})"
    if outcome.skipped_reason is not None:
        return Check(name, True, DRIFT_TESTS[outcome.name], f"skipped: {outcome.skipped_reason}")
    details = outcome.as_dict()
    p_value = "" if details["p_value"] is None else f", p = {details['p_value']}"
    verdict = "drifted" if outcome.flagged else "no drift"
    summary = (
        f"{verdict}: statistic {details['statistic']} vs threshold {details['threshold']}"
        f"{p_value} (alpha {alpha}); false-alarm rate "
        f"{_share(details['false_alarm_rate'])} on {outcome.calibration_drops} pseudo-drops"
    )
    return _flagged_check(
        name, DRIFT_TESTS[outcome.name], summary, outcome.flagged, outcome.blocking, details
    )


def _label_check(result: Mapping[str, Any], suspects: pd.DataFrame) -> Check:
    summary = (
        f"{result['count']} of {result['drop_images']} images suspected "
        f"({_share(result['share'])}, threshold {_share(result['threshold'])})"
    )
    return _flagged_check(
        f"suspected label errors ({result['drop']})",
        LABEL_QUALITY_TEST,
        summary,
        result["flagged"],
        result["blocking"],
        dict(result),
        _records(suspects),
    )


def _duplicate_checks(
    duplicates: Mapping[str, Any], conflicts: pd.DataFrame, leaks: pd.DataFrame
) -> list[Check]:
    threshold = duplicates["threshold"]
    specs = [
        ("label_conflicts", "near-duplicates with two labels", conflicts, "with two labels"),
        ("split_leaks", "near-duplicates across the test split", leaks, "across test"),
    ]
    checks = []
    for key, name, table, problem in specs:
        finding = duplicates[key]
        summary = (
            f"{finding['count']} new pair(s) at cosine ≥ {threshold} {problem}"
            if finding["count"]
            else f"no new pair at cosine ≥ {threshold} {problem}"
        )
        checks.append(
            _flagged_check(
                name,
                DUPLICATES_TEST,
                summary,
                finding["flagged"],
                finding["blocking"],
                finding["count"],
                _records(table),
            )
        )
    return checks


def _flagged_check(
    name: str,
    test: str,
    summary: str,
    flagged: bool,
    blocking: bool,
    observed: Any,
    offending: list[dict[str, Any]] | None = None,
) -> Check:
    if flagged and not blocking:
        summary = f"warning: {summary}"
    return Check(
        name=name,
        success=not blocking,
        expectation=test,
        summary=summary,
        observed=observed,
        offending=offending if flagged else None,
        warning=flagged and not blocking,
    )


def _problem_pairs(
    conflicts: pd.DataFrame,
    leaks: pd.DataFrame,
    label_of: Mapping[str, str],
    split_of: Mapping[str, str],
) -> pd.DataFrame:
    """Each conflicting or leaking pair once, with both images' labels and splits."""
    pairs = pd.concat([conflicts, leaks], ignore_index=True)
    pairs = pairs.drop_duplicates(["sha256_a", "sha256_b"], ignore_index=True)
    for (column_a, column_b), value_of in (
        (PAIR_LABEL_COLUMNS, label_of),
        (PAIR_SPLIT_COLUMNS, split_of),
    ):
        pairs[column_a] = [value_of.get(sha256, "") for sha256 in pairs["sha256_a"]]
        pairs[column_b] = [value_of.get(sha256, "") for sha256 in pairs["sha256_b"]]
    return pairs.sort_values("similarity", ascending=False, ignore_index=True, kind="stable")


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            key: round_metric(value) if isinstance(value, float) else value
            for key, value in row.items()
        }
        for row in table.to_dict("records")
    ]


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def with_findings(
    contract_report: Mapping[str, Any],
    findings: QualityFindings | None,
    review: Mapping[str, Any],
) -> dict[str, Any]:
    """The validation report: the contract's, with the quality checks and their sections added,
    the review recorded, and `success` over every check. No findings (the manifest's structure
    broke the contract) leave the quality sections empty and say so under `skipped`."""
    report = dict(contract_report)
    if findings is None:
        report["skipped"] = [*report["skipped"], _SKIPPED_QUALITY]
        checks, sections = [], _empty_sections()
    else:
        checks, sections = [check.as_dict() for check in findings.checks], findings.sections
    report["checks"] = [*report["checks"], *checks]
    report["success"] = all(check["success"] for check in report["checks"])
    report["warnings"] = [check["name"] for check in report["checks"] if check["warning"]]
    return {**report, **sections, "review": dict(review)}


def review_tables(findings: QualityFindings | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The suspects and the problem pairs to show on the review page (none without findings)."""
    if findings is None:
        return pd.DataFrame(columns=list(SUSPECT_COLUMNS)), pd.DataFrame(columns=list(PAIR_COLUMNS))
    return findings.suspects, findings.pairs


_SKIPPED_QUALITY = (
    "data-quality checks (drift, label errors, duplicates): the manifest's structure broke "
    "the contract"
)


def _empty_sections() -> dict[str, Any]:
    return {
        "new_drops": [],
        "drift": [],
        "label_quality": {"drops": [], "suspects": []},
        "duplicates": None,
    }
