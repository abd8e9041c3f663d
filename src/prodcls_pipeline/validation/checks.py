"""The data contract of the manifest, checked with Great Expectations, as a JSON-ready report.

Each check is one or more GX expectations over the manifest or over a table derived from it
(ok images, per-class counts, per-drop quarantine fractions, sha256→label pairs). The report
holds no timestamps or run ids, so an unchanged manifest gives a byte-identical report and DVC
sees no change.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Literal

import great_expectations as gx
import pandas as pd
from great_expectations.core import ExpectationValidationResult
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations import Expectation
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from prodcls_pipeline.core.errors import GateError
from prodcls_pipeline.core.numbers import METRIC_DIGITS, round_metric
from prodcls_pipeline.core.rules import Rule
from prodcls_pipeline.core.schema import (
    INTEGER_COLUMNS,
    MANIFEST_COLUMNS,
    OK,
    PINNED_SPLITS,
    QUARANTINED,
    SPLITS,
    STATUSES,
)

# GX's in_type_list does not recognise pandas 3's `str` dtype; of_type "str" accepts it, and
# checks element by element when a column holds Python objects.
COLUMN_TYPES = {
    column: "int64" if column in INTEGER_COLUMNS else "str" for column in MANIFEST_COLUMNS
}
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# Summaries are one line each (the gate error prints them); the offending list holds the rest.
SUMMARY_ITEMS = 5
# A classifier tells classes apart: fewer than two in the accepted data is nothing to learn.
MIN_CLASSES = 2

Rows = list[dict[str, Any]]


class ValidationGateError(GateError):
    """The manifest broke its data contract: retraining must not go ahead."""


@dataclass(frozen=True)
class ValidationRules(Rule):
    """The thresholds of the contract (params.yaml `validate:`)."""

    params_section: ClassVar[str] = "validate"

    new_class_policy: Literal["allow", "fail"]
    min_images_per_class: int
    max_quarantine_fraction: float
    max_class_share_shift: float


@dataclass(frozen=True)
class Check:
    """One line of the report: passed or failed, what was tested, and the offending rows.

    A `warning` is a finding whose policy is to warn: the check passes, and the report says so.
    """

    name: str
    success: bool
    expectation: str
    summary: str
    observed: Any = None
    offending: Rows | None = None
    warning: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "success": self.success,
            "expectation": self.expectation,
            "summary": self.summary,
            "observed": self.observed,
            "offending": self.offending or [],
            "warning": self.warning,
        }


class _GxRunner:
    """One ephemeral GX context and pandas data source per process: creating them is slow."""

    def __init__(self) -> None:
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._source = self._context.data_sources.add_pandas("prodcls")
        self._batch_definitions: dict[str, Any] = {}

    def validate(
        self, table: str, frame: pd.DataFrame, expectations: list[Expectation]
    ) -> list[ExpectationValidationResult]:
        if table not in self._batch_definitions:
            asset = self._source.add_dataframe_asset(table)
            self._batch_definitions[table] = asset.add_batch_definition_whole_dataframe(table)
        batch = self._batch_definitions[table].get_batch(batch_parameters={"dataframe": frame})
        suite = gx.ExpectationSuite(name=table, expectations=expectations)
        results = batch.validate(suite, result_format="COMPLETE").results
        # GX does not keep the suite's order: pair each expectation with its own result.
        by_target = {_target(result.expectation_config): result for result in results}
        if len(by_target) != len(expectations):
            raise ValueError(f"Two expectations on {table} share a type and column")
        return [by_target[_target(expectation.configuration)] for expectation in expectations]


def _target(configuration: ExpectationConfiguration) -> tuple[str, str | None]:
    return configuration.type, configuration.kwargs.get("column")


@cache
def _gx_runner() -> _GxRunner:
    return _GxRunner()


def validate_manifest(
    manifest: pd.DataFrame, previous_validated_manifest: pd.DataFrame, rules: ValidationRules
) -> dict[str, Any]:
    """Check the manifest against its contract; return the report (see module docstring)."""
    manifest = manifest.reset_index(drop=True)
    structure_checks = _structure_checks(manifest)
    structure_ok = all(check.success for check in structure_checks)
    has_previous = not previous_validated_manifest.empty
    report: dict[str, Any] = {
        "success": False,
        "counts": {"files": len(manifest)},
        "new_class_policy": rules.new_class_policy,
        "has_previous_manifest": has_previous,
        "checks": [],
        "skipped": [],
        "quarantined": [],
        "normalised_labels": [],
        "conflicts": [],
        "new_classes": [],
        "class_distribution": [],
    }
    checks = list(structure_checks)
    if structure_ok:
        previous = previous_validated_manifest if has_previous else None
        content = _ContentChecks(manifest, previous, rules)
        checks += content.run()
        report |= {
            "counts": _counts(manifest),
            "quarantined": _quarantined_files(manifest),
            "normalised_labels": _normalised_labels(manifest),
            "conflicts": content.conflicts,
            "new_classes": content.new_classes,
            "class_distribution": content.distribution,
        }
    else:
        report["skipped"] = ["content checks: the manifest's structure broke the contract"]
    report["checks"] = [check.as_dict() for check in checks]
    report["success"] = all(check.success for check in checks)
    return report


def failed_check_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per failed check: `<name>: <summary>`."""
    return [
        f"{check['name']}: {check['summary']}" for check in report["checks"] if not check["success"]
    ]


def raise_if_failed(report: Mapping[str, Any]) -> None:
    """Raise ValidationGateError naming each failed check when the report did not pass."""
    if report["success"]:
        return
    lines = failed_check_lines(report) + [f"skipped {item}" for item in report["skipped"]]
    listing = "\n".join(f"  - {line}" for line in lines)
    raise ValidationGateError(
        f"Manifest validation failed; retraining stops here.\n{listing}\n"
        "The validation report lists every offending file."
    )


def select_validated(manifest: pd.DataFrame) -> pd.DataFrame:
    """Ok rows, one per sha256: the first by (drop, source_path)."""
    ok_rows = manifest[manifest["status"] == OK].sort_values(["drop", "source_path"])
    return ok_rows.drop_duplicates("sha256", keep="first").reset_index(drop=True)


def _structure_checks(manifest: pd.DataFrame) -> list[Check]:
    """Rows, columns, types and nulls; then, once those hold, each column's allowed values."""
    present = [column for column in MANIFEST_COLUMNS if column in manifest.columns]
    expectations: list[Expectation] = [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
        gx.expectations.ExpectTableColumnsToMatchOrderedList(column_list=list(MANIFEST_COLUMNS)),
    ]
    expectations += [
        gx.expectations.ExpectColumnValuesToBeOfType(column=column, type_=COLUMN_TYPES[column])
        for column in present
    ]
    expectations += [
        gx.expectations.ExpectColumnValuesToNotBeNull(column=column) for column in present
    ]
    results = _gx_runner().validate("manifest", manifest, expectations)
    row_count, columns, *per_column = results
    types, nulls = per_column[: len(present)], per_column[len(present) :]
    checks = [
        Check(
            name="manifest not empty",
            success=row_count.success,
            expectation=row_count.expectation_config.type,
            summary=f"{_count(len(manifest), 'row')}",
            observed=len(manifest),
        ),
        _schema_check(columns, list(manifest.columns)),
        _types_check(types),
        _nulls_check(nulls, manifest),
    ]
    if all(check.success for check in checks):
        checks += _value_checks(manifest)
    return checks


def _schema_check(result: ExpectationValidationResult, columns: list[str]) -> Check:
    missing = [column for column in MANIFEST_COLUMNS if column not in columns]
    unexpected = [column for column in columns if column not in MANIFEST_COLUMNS]
    offending = [{"column": column, "problem": "missing"} for column in missing]
    offending += [{"column": column, "problem": "unexpected"} for column in unexpected]
    if not result.success and not offending:
        offending = [{"column": ", ".join(columns), "problem": "out of order"}]
    summary = "; ".join(f"{row['problem']}: {row['column']}" for row in offending)
    return Check(
        name="schema",
        success=result.success,
        expectation=result.expectation_config.type,
        summary=summary or f"{len(columns)} columns in the contract's order",
        observed=[str(column) for column in columns],
        offending=offending,
    )


def _types_check(results: list[ExpectationValidationResult]) -> Check:
    observed = {}
    offending = []
    for result in results:
        column = result.expectation_config.kwargs["column"]
        expected = COLUMN_TYPES[column]
        found = result.result.get("observed_value")
        if found is None:
            found = f"object with {result.result.get('unexpected_count', 0)} non-{expected} values"
        observed[column] = str(found)
        if not result.success:
            offending.append({"column": column, "expected": expected, "observed": str(found)})
    return Check(
        name="column types",
        success=all(result.success for result in results),
        expectation="expect_column_values_to_be_of_type",
        summary="; ".join(
            f"{row['column']} is {row['observed']}, not {row['expected']}" for row in offending
        )
        or "every column has its contract type",
        observed=observed,
        offending=offending,
    )


def _nulls_check(results: list[ExpectationValidationResult], manifest: pd.DataFrame) -> Check:
    offending = []
    for result in results:
        column = result.expectation_config.kwargs["column"]
        for index in result.result.get("unexpected_index_list", []):
            offending.append({"column": column, **_row_identity(manifest, index)})
    columns = sorted({row["column"] for row in offending})
    return Check(
        name="missing values",
        success=all(result.success for result in results),
        expectation="expect_column_values_to_not_be_null",
        summary=f"{_count(len(offending), 'missing value')} in {', '.join(columns)}"
        if offending
        else "no missing values",
        observed=len(offending),
        offending=offending,
    )


def _value_checks(manifest: pd.DataFrame) -> list[Check]:
    specs: list[tuple[str, Expectation, str]] = [
        (
            "status values",
            gx.expectations.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUSES)),
            f"status outside {{{', '.join(STATUSES)}}}",
        ),
        (
            "pinned split values",
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="pinned_split", value_set=list(PINNED_SPLITS)
            ),
            f"pinned_split outside {{'', {', '.join(SPLITS)}}}",
        ),
        (
            "sha256 format",
            gx.expectations.ExpectColumnValuesToMatchRegex(column="sha256", regex=SHA256_PATTERN),
            "sha256 is not 64 lowercase hex characters",
        ),
    ]
    results = _gx_runner().validate("manifest", manifest, [spec[1] for spec in specs])
    checks = []
    for (name, _, problem), result in zip(specs, results, strict=True):
        column = result.expectation_config.kwargs["column"]
        offending = [
            {**_row_identity(manifest, index), column: str(manifest.at[index, column])}
            for index in result.result.get("unexpected_index_list", [])
        ]
        checks.append(
            Check(
                name=name,
                success=result.success,
                expectation=result.expectation_config.type,
                summary=f"{_count(len(offending), 'row')} with {problem}"
                if offending
                else "all rows valid",
                observed=result.result.get("unexpected_count", 0),
                offending=offending,
            )
        )
    return checks


class _ContentChecks:
    """Checks of the manifest's meaning, run once its structure is known to be sound."""

    def __init__(
        self, manifest: pd.DataFrame, previous: pd.DataFrame | None, rules: ValidationRules
    ) -> None:
        self._manifest = manifest
        self._ok = manifest[manifest["status"] == OK].reset_index(drop=True)
        self._previous = previous
        self._rules = rules
        self.conflicts: Rows = []
        self.new_classes: list[str] = []
        self.distribution: Rows = []

    def run(self) -> list[Check]:
        steps: list[Callable[[], Check]] = [
            self._known_labels,
            self._conflicts,
            self._label_spellings,
            self._coarse_labels,
            self._images_per_class,
            self._class_count,
            self._quarantine_fraction,
            self._class_distribution,
        ]
        return [step() for step in steps]

    def _known_labels(self) -> Check:
        name, expectation = "known labels", "expect_column_values_to_be_in_set"
        labels = sorted(self._ok["label"].unique())
        if self._previous is None:
            self.new_classes = labels
            return Check(
                name=name,
                success=True,
                expectation=expectation,
                summary=f"no previous manifest: all {len(labels)} classes are new",
                observed=labels,
            )
        known = sorted(self._previous["label"].unique())
        (result,) = _gx_runner().validate(
            "ok_images",
            self._ok,
            [gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=known)],
        )
        self.new_classes = sorted(set(result.result.get("unexpected_list", [])))
        offending = [
            {
                "label": label,
                "images": int(self._ok.loc[self._ok["label"] == label, "sha256"].nunique()),
            }
            for label in self.new_classes
        ]
        allowed = self._rules.new_class_policy == "allow"
        verdict = "allowed" if allowed else "not allowed (new_class_policy: fail)"
        return Check(
            name=name,
            success=result.success or allowed,
            expectation=expectation,
            summary=(
                f"{_count(len(self.new_classes), 'new class')} {verdict}: "
                f"{_listing(self.new_classes)}"
            )
            if self.new_classes
            else "no new classes",
            observed={"known": len(known), "new": len(self.new_classes)},
            offending=[] if allowed else offending,
        )

    def _conflicts(self) -> Check:
        # Judged on the images that decoded: two quarantined files (two empty ones, say) share
        # a sha256 without being one picture anyone labelled twice.
        pairs = self._ok[["sha256", "label"]].drop_duplicates().reset_index(drop=True)
        result, groups = _repeated_values("sha256_labels", pairs, "sha256", rows=self._ok)
        self.conflicts = [
            {
                "sha256": sha256,
                "labels": sorted(group["label"].unique()),
                "source_paths": sorted(group["source_path"]),
            }
            for sha256, group in groups
        ]
        examples = _listing(
            [f"{row['sha256'][:12]}…: {' vs '.join(row['labels'])}" for row in self.conflicts]
        )
        return Check(
            name="sha256 conflict",
            success=result.success,
            expectation=result.expectation_config.type,
            summary=f"{_count(len(self.conflicts), 'image')} with more than one label ({examples})"
            if self.conflicts
            else "every image has one label",
            observed=len(self.conflicts),
            offending=self.conflicts,
        )

    def _label_spellings(self) -> Check:
        """Labels that are one class once case is ignored (`Kiwi`, `KIWI`): which spelling is
        meant is a person's call, so the drop stops until the labels agree."""
        labels = pd.DataFrame({"label": sorted(self._ok["label"].unique())})
        labels["folded"] = labels["label"].str.casefold()
        result, groups = _repeated_values("label_spellings", labels, "folded")
        offending = [{"labels": sorted(group["label"])} for _, group in groups]
        return Check(
            name="label spellings",
            success=result.success,
            expectation=result.expectation_config.type,
            summary=(
                f"{_count(len(offending), 'class')} spelt more than one way: "
                + _listing(
                    [" vs ".join(repr(label) for label in row["labels"]) for row in offending]
                )
            )
            if offending
            else "every class has one spelling",
            observed=len(offending),
            offending=offending,
        )

    def _coarse_labels(self) -> Check:
        """A fine label belongs to one coarse label: a second one makes the coarse scores and the
        hierarchy the model learns contradict each other. A drop that gives none says nothing."""
        pairs = (
            self._ok.loc[self._ok["coarse_label"] != "", ["label", "coarse_label"]]
            .drop_duplicates()
            .sort_values(["label", "coarse_label"], ignore_index=True)
        )
        result, groups = _repeated_values("coarse_labels", pairs, "label")
        offending = [
            {"label": label, "coarse_labels": group["coarse_label"].tolist()}
            for label, group in groups
        ]
        listing = _listing(
            [
                f"{row['label']} in {' and '.join(map(repr, row['coarse_labels']))}"
                for row in offending
            ]
        )
        return Check(
            name="coarse labels",
            success=result.success,
            expectation=result.expectation_config.type,
            summary=f"{_count(len(offending), 'class')} with two coarse labels: {listing}"
            if offending
            else "every class has one coarse label",
            observed=len(offending),
            offending=offending,
        )

    def _images_per_class(self) -> Check:
        counts = (
            self._ok.groupby("label")["sha256"].nunique().rename("images").reset_index()
        ).sort_values("label", ignore_index=True)
        minimum = self._rules.min_images_per_class
        (result,) = _gx_runner().validate(
            "class_counts",
            counts,
            [gx.expectations.ExpectColumnValuesToBeBetween(column="images", min_value=minimum)],
        )
        small = counts.loc[result.result.get("unexpected_index_list", [])]
        offending = small.to_dict("records")
        listing = _listing([f"{row['label']} has {row['images']}" for row in offending])
        return Check(
            name="images per class",
            success=result.success,
            expectation=result.expectation_config.type,
            summary=f"{_count(len(offending), 'class')} below {minimum} images: {listing}"
            if offending
            else f"every class has at least {minimum} images",
            observed=dict(zip(counts["label"], counts["images"].tolist(), strict=True)),
            offending=offending,
        )

    def _class_count(self) -> Check:
        """The accepted data, all drops together, holds two classes at least: a drop of one class
        adds to the others, but one class alone is nothing a classifier can learn."""
        (result,) = _gx_runner().validate(
            "class_count",
            self._ok,
            [
                gx.expectations.ExpectColumnUniqueValueCountToBeBetween(
                    column="label", min_value=MIN_CLASSES
                )
            ],
        )
        classes = int(self._ok["label"].nunique())
        return Check(
            name="classes",
            success=result.success,
            expectation=result.expectation_config.type,
            summary=f"{_count(classes, 'class')} across the drops"
            if result.success
            else f"{_count(classes, 'class')} across the drops: a classifier needs at least "
            f"{MIN_CLASSES}; land a drop with another class",
            observed=classes,
        )

    def _quarantine_fraction(self) -> Check:
        per_drop = (
            self._manifest.assign(quarantined=self._manifest["status"] == QUARANTINED)
            .groupby("drop")
            .agg(files=("sha256", "size"), quarantined=("quarantined", "sum"))
            .reset_index()
            .sort_values("drop", ignore_index=True)
        )
        per_drop["quarantined"] = per_drop["quarantined"].astype("int64")
        per_drop["fraction"] = (per_drop["quarantined"] / per_drop["files"]).round(METRIC_DIGITS)
        maximum = self._rules.max_quarantine_fraction
        (result,) = _gx_runner().validate(
            "drop_quarantine",
            per_drop,
            [gx.expectations.ExpectColumnValuesToBeBetween(column="fraction", max_value=maximum)],
        )
        offending = per_drop.loc[result.result.get("unexpected_index_list", [])].to_dict("records")
        listing = _listing(
            [
                f"{row['drop']} has {row['quarantined']}/{row['files']} quarantined"
                for row in offending
            ]
        )
        return Check(
            name="quarantine fraction",
            success=result.success,
            expectation=result.expectation_config.type,
            summary=f"{listing} (max {maximum:.0%} per drop)"
            if offending
            else f"every drop at most {maximum:.0%} quarantined",
            observed=per_drop.to_dict("records"),
            offending=offending,
        )

    def _class_distribution(self) -> Check:
        name, expectation = "class distribution", "expect_column_values_to_be_between"
        current = _class_shares(self._ok)
        if self._previous is None:
            self.distribution = [
                {
                    "label": label,
                    "previous_images": 0,
                    "previous_share": None,
                    "images": images,
                    "share": share,
                    "share_change": None,
                }
                for label, (images, share) in current.items()
            ]
            return Check(
                name=name,
                success=True,
                expectation=expectation,
                summary="no previous manifest to compare with",
            )
        previous = _class_shares(self._previous)
        labels = sorted(current.keys() | previous.keys())
        table = pd.DataFrame(
            [
                {
                    "label": label,
                    "previous_images": previous.get(label, (0, 0.0))[0],
                    "previous_share": previous.get(label, (0, 0.0))[1],
                    "images": current.get(label, (0, 0.0))[0],
                    "share": current.get(label, (0, 0.0))[1],
                }
                for label in labels
            ],
            columns=["label", "previous_images", "previous_share", "images", "share"],
        )
        table["share_change"] = (table["share"] - table["previous_share"]).round(METRIC_DIGITS)
        shift = self._rules.max_class_share_shift
        (result,) = _gx_runner().validate(
            "class_distribution",
            table,
            [
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column="share_change", min_value=-shift, max_value=shift
                )
            ],
        )
        self.distribution = table.to_dict("records")
        offending = table.loc[result.result.get("unexpected_index_list", [])].to_dict("records")
        listing = _listing(
            [
                f"{row['label']} {row['previous_share']:.1%} → {row['share']:.1%}"
                for row in offending
            ]
        )
        largest = float(table["share_change"].abs().max()) if len(table) else 0.0
        return Check(
            name=name,
            success=result.success,
            expectation=expectation,
            summary=f"share moved more than {shift:.0%}: {listing}"
            if offending
            else f"largest share change {largest:.1%} (max {shift:.0%})",
            observed={"largest_share_change": largest},
            offending=offending,
        )


def _class_shares(manifest: pd.DataFrame) -> dict[str, tuple[int, float]]:
    counts = manifest.groupby("label")["sha256"].nunique().sort_index()
    total = int(counts.sum())
    return {
        str(label): (int(count), round_metric(count / total)) for label, count in counts.items()
    }


def _counts(manifest: pd.DataFrame) -> dict[str, int]:
    ok_rows = manifest[manifest["status"] == OK]
    return {
        "files": len(manifest),
        "ok": len(ok_rows),
        "quarantined": int((manifest["status"] == QUARANTINED).sum()),
        "images": int(ok_rows["sha256"].nunique()),
        "classes": int(ok_rows["label"].nunique()),
        "drops": int(manifest["drop"].nunique()),
    }


def _quarantined_files(manifest: pd.DataFrame) -> Rows:
    quarantined = manifest[manifest["status"] == QUARANTINED].sort_values(["drop", "source_path"])
    return [
        {
            "drop": row.drop,
            "source_path": row.source_path,
            "sha256": row.sha256,
            "reason": row.quarantine_reason,
        }
        for row in quarantined.itertuples(index=False)
    ]


# Each column that holds a label, and the column that keeps it as the drop spelt it.
_GIVEN_LABEL_COLUMNS = {"label": "given_label", "coarse_label": "given_coarse_label"}


def _normalised_labels(manifest: pd.DataFrame) -> Rows:
    """Per drop, each label spelling that ingest normalised, what it became, and on how many
    files."""
    rows = []
    for column, given_column in _GIVEN_LABEL_COLUMNS.items():
        changed = manifest[manifest[given_column] != ""]
        counted = changed.groupby(["drop", given_column, column], sort=True).size()
        rows += [
            {"drop": drop, "column": column, "given": given, "normalised": label, "files": files}
            for (drop, given, label), files in counted.items()
        ]
    return sorted(rows, key=lambda row: (row["drop"], row["column"], row["given"]))


def _repeated_values(
    suite: str, frame: pd.DataFrame, column: str, rows: pd.DataFrame | None = None
) -> tuple[ExpectationValidationResult, list[tuple[Any, pd.DataFrame]]]:
    """Great Expectations' uniqueness expectation on `frame[column]`, and the rows of `rows`
    (`frame` unless given) whose value of `column` repeats in `frame`, grouped by that value in
    sorted order."""
    (result,) = _gx_runner().validate(
        suite, frame, [gx.expectations.ExpectColumnValuesToBeUnique(column=column)]
    )
    rows = frame if rows is None else rows
    repeated = rows[rows[column].isin(set(result.result.get("unexpected_list", [])))]
    return result, list(repeated.groupby(column, sort=True))


def _count(number: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{number:,} {noun if number == 1 else plural}"


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:SUMMARY_ITEMS])
    hidden = len(items) - SUMMARY_ITEMS
    return f"{shown} … and {hidden} more" if hidden > 0 else shown


def _row_identity(frame: pd.DataFrame, index: int) -> dict[str, Any]:
    """Name a row by its file; by its position only when the manifest lacks those columns."""
    if not {"drop", "source_path"} <= set(frame.columns):
        return {"row": int(index)}
    return {
        "drop": str(frame.at[index, "drop"]),
        "source_path": str(frame.at[index, "source_path"]),
    }
