"""The validation report as a Markdown page for people (GX Data Docs need CDNs: not offline)."""

from collections.abc import Mapping
from typing import Any

from prodcls_pipeline.core.tables import code, markdown_table
from prodcls_pipeline.validation.review import SHORT_SHA256

MAX_LISTED_ROWS = 50
MAX_CLASS_ROWS = 300
PASSED, FAILED, WARNED = "✅", "❌", "⚠️"


def render_markdown(report: Mapping[str, Any]) -> str:
    """A readable page: verdict, checks table, failed checks' offenders, quarantine, classes."""
    sections = [
        _summary(report),
        _checks_table(report["checks"]),
        *(_failed_check(check) for check in report["checks"] if not check["success"]),
        *(f"> Skipped {item}." for item in report["skipped"]),
        _quarantined(report["quarantined"]),
        _normalised_labels(report["normalised_labels"]),
        _new_classes(report),
        _drift(report.get("drift", [])),
        _suspects(report.get("label_quality")),
        _review(report.get("review")),
        _class_distribution(report["class_distribution"], report["has_previous_manifest"]),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _summary(report: Mapping[str, Any]) -> str:
    checks = report["checks"]
    failed = [check["name"] for check in checks if not check["success"]]
    counts = report["counts"]
    warnings = report.get("warnings", [])
    if report["success"]:
        verdict = f"**PASSED** {PASSED}: all {len(checks)} checks passed."
        if warnings:
            verdict += f" {WARNED} {len(warnings)} with a warning ({', '.join(warnings)})."
    else:
        verdict = (
            f"**FAILED** {FAILED}: {len(failed)} of {len(checks)} checks failed "
            f"({', '.join(failed) or 'structure'})."
        )
    sizes = ", ".join(f"{value:,} {name}" for name, value in counts.items())
    return f"# Manifest validation\n\n{verdict}\n\n{sizes}."


def _checks_table(checks: list[Mapping[str, Any]]) -> str:
    rows = [
        [_mark(check), check["name"], check["summary"], code(check["expectation"])]
        for check in checks
    ]
    return "## Checks\n\n" + markdown_table(["", "check", "result", "test"], rows)


def _mark(check: Mapping[str, Any]) -> str:
    if not check["success"]:
        return FAILED
    return WARNED if check.get("warning") else PASSED


def _failed_check(check: Mapping[str, Any]) -> str:
    offending = check["offending"]
    heading = f"### {FAILED} {check['name']}\n\n{check['summary']}"
    if not offending:
        return heading
    columns = list(offending[0])
    rows = [[item.get(column, "") for column in columns] for item in offending]
    return f"{heading}\n\n{_capped_table(columns, rows, MAX_LISTED_ROWS)}"


def _quarantined(files: list[Mapping[str, Any]]) -> str:
    if not files:
        return "## Quarantined files\n\nNone."
    rows = [[item["drop"], item["source_path"], item["reason"]] for item in files]
    table = _capped_table(["drop", "file", "reason"], rows, MAX_LISTED_ROWS)
    return f"## Quarantined files ({len(files):,})\n\n{table}"


def _normalised_labels(changes: list[Mapping[str, Any]]) -> str:
    if not changes:
        return "## Normalised labels\n\nNone: every label was spelt as it is."
    rows = [
        [item["drop"], item["column"], code(item["given"]), code(item["normalised"]), item["files"]]
        for item in changes
    ]
    columns = ["drop", "column", "given as", "normalised to", "files"]
    intro = "Unicode NFC, whitespace runs made one space, ends trimmed; case is kept."
    table = _capped_table(columns, rows, MAX_LISTED_ROWS)
    return f"## Normalised labels ({len(changes):,})\n\n{intro}\n\n{table}"


def _new_classes(report: Mapping[str, Any]) -> str:
    classes = report["new_classes"]
    if not report["has_previous_manifest"]:
        intro = "No previous manifest (first run): every class is new."
    elif not classes:
        return "## New classes\n\nNone."
    else:
        intro = f"Policy `{report['new_class_policy']}`."
    listed = ", ".join(classes[:MAX_LISTED_ROWS]) + _more(len(classes), MAX_LISTED_ROWS)
    return f"## New classes ({len(classes):,})\n\n{intro}\n\n{listed}"


def _drift(drops: list[Mapping[str, Any]]) -> str:
    if not drops:
        return ""
    rows = [
        [
            drop["drop"],
            check["name"],
            check["skipped_reason"] or _flag(check),
            _value(check["statistic"]),
            _value(check["threshold"]),
            _value(check["p_value"]),
            _percent(check["false_alarm_rate"]),
            check["policy"],
        ]
        for drop in drops
        for check in drop["checks"]
    ]
    columns = ["drop", "check", "result", "statistic", "threshold", "p", "false alarms", "policy"]
    note = (
        "False alarms: the share of in-distribution pseudo-drops (resampled from the accepted "
        "data, same size) that the check flagged."
    )
    return f"## Drift against the accepted data\n\n{markdown_table(columns, rows)}\n\n{note}"


def _suspects(label_quality: Mapping[str, Any] | None) -> str:
    if not label_quality or not label_quality["drops"]:
        return ""
    suspects = label_quality["suspects"]
    if not suspects:
        return "## Suspected label errors\n\nNone in the new drops."
    rows = [
        [
            code(item["sha256"][:SHORT_SHA256]),
            item["given_label"],
            f"{item['given_probability']:.2f}",
            item["suggested_label"],
            f"{item['suggested_probability']:.2f}",
        ]
        for item in suspects
    ]
    columns = ["image", "given label", "p(given)", "suggested label", "p(suggested)"]
    table = _capped_table(columns, rows, MAX_LISTED_ROWS)
    return (
        f"## Suspected label errors ({len(suspects):,})\n\n{table}\n\n"
        "Thumbnails and the decision rows to paste are on the review page (label_review.html)."
    )


def _review(review: Mapping[str, Any] | None) -> str:
    if not review:
        return ""
    applied, unmatched = review["applied"], review["unmatched"]
    if not applied and not unmatched:
        return f"## Review decisions\n\nNone in `{review['file']}`."
    rows = [
        [
            code(item["sha256"][:SHORT_SHA256]),
            item["decision"],
            item["old_label"],
            item["new_label"],
            item["note"],
        ]
        for item in applied
    ]
    columns = ["image", "decision", "label before", "label after", "note"]
    table = _capped_table(columns, rows, MAX_LISTED_ROWS)
    section = f"## Review decisions ({len(applied):,} applied)\n\n{table}"
    if unmatched:
        section += f"\n\n{len(unmatched):,} decision(s) match no delivered image yet."
    return section


def _flag(check: Mapping[str, Any]) -> str:
    if not check["flagged"]:
        return "no drift"
    return "drifted: blocks" if check["blocking"] else "drifted: warning"


def _value(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def _class_distribution(table: list[Mapping[str, Any]], has_previous: bool) -> str:
    if not table:
        return ""
    rows = [
        [
            row["label"],
            row["previous_images"] if has_previous else "—",
            _percent(row["previous_share"]),
            row["images"],
            _percent(row["share"]),
            _percent(row["share_change"], signed=True),
        ]
        for row in table
    ]
    columns = ["class", "previous", "previous share", "current", "current share", "change"]
    return f"## Class distribution\n\n{_capped_table(columns, rows, MAX_CLASS_ROWS)}"


def _capped_table(columns: list[str], rows: list[list[Any]], limit: int) -> str:
    table = markdown_table(columns, rows[:limit])
    more = _more(len(rows), limit)
    return f"{table}\n\n{more.strip()}" if more else table


def _percent(share: float | None, signed: bool = False) -> str:
    if share is None:
        return "—"
    return f"{share:+.1%}" if signed else f"{share:.1%}"


def _more(total: int, limit: int) -> str:
    return f" … and {total - limit:,} more" if total > limit else ""
