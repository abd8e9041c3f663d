"""The four audit reports (list, show, diff, reproduce): the data each one carries, and the
document it reads as."""

from typing import Any

from prodcls_pipeline.audit.documents import (
    Report,
    Section,
    Table,
    cell,
    literal,
    p_value,
    signed,
)
from prodcls_pipeline.audit.versions import AuditedVersion
from prodcls_pipeline.core.schema import SPLITS
from prodcls_pipeline.validation.review import APPLIED_COLUMNS, REVIEW_FILE

SHORT_HASH = 12
SHORT_COMMIT = 10
# Per class, the terminal names this many added images; every format file names all of them.
EXAMPLES_PER_CLASS = 3
_METRICS_LISTED = ("top1", "macro_f1", "coarse_top1")


def version_row(version: AuditedVersion) -> dict[str, Any]:
    """What `audit list` says of one version."""
    record = version.record
    if record is None:
        return {
            "version": version.number,
            "registered_at": version.registered_at.isoformat(timespec="seconds"),
            "aliases": version.aliases,
            "lineage_record": False,
            "git_commit": version.tags.get("git_commit", ""),
            "top1": _number(version.tags.get("test_top1")),
            "promotion": version.tags.get("promotion_verdict", ""),
        }
    data, gates = record["data"], record["gates"]
    return {
        "version": version.number,
        "registered_at": version.registered_at.isoformat(timespec="seconds"),
        "aliases": version.aliases,
        "lineage_record": True,
        "drops": [drop["drop"] for drop in data["drops"]],
        "images_per_split": data["images_per_split"],
        "data_hash": data["raw_data_dvc_hash"],
        "params_hash": record["params"]["hash"],
        "git_commit": record["code"]["git_commit"],
        "git_dirty": record["code"]["git_dirty"],
        **{metric: record["metrics"].get(metric) for metric in _METRICS_LISTED},
        "validation": "passed" if gates["validation"]["success"] else "failed",
        "promotion": gates["promotion"]["verdict"],
        "parent_champion": record["parent_champion"],
    }


def list_report(model_name: str, rows: list[dict[str, Any]]) -> Report:
    columns = [
        "version",
        "registered (UTC)",
        "alias",
        "drops",
        "train/val/test",
        "data hash",
        "params hash",
        "git commit",
        "dirty",
        "top-1",
        "macro-F1",
        "coarse top-1",
        "validation",
        "promotion",
    ]
    table_rows = [
        [
            f"v{row['version']}",
            row["registered_at"].replace("+00:00", ""),
            row["aliases"],
            row.get("drops"),
            "/".join(str(row["images_per_split"][split]) for split in SPLITS)
            if row.get("images_per_split")
            else None,
            _short(row.get("data_hash"), SHORT_HASH),
            _short(row.get("params_hash"), SHORT_HASH),
            _short(row.get("git_commit"), SHORT_COMMIT),
            row.get("git_dirty"),
            row.get("top1"),
            row.get("macro_f1"),
            row.get("coarse_top1"),
            row.get("validation"),
            row.get("promotion"),
        ]
        for row in rows
    ]
    missing = [f"v{row['version']}" for row in rows if not row["lineage_record"]]
    note = f"No lineage record (registered before records were kept): {', '.join(missing)}."
    return Report(
        f"Model versions of {model_name}",
        [
            Section(
                f"{len(rows)} version(s)",
                tables=[Table("Versions", columns, table_rows, note if missing else "")],
            )
        ],
    )


def show_data(version: AuditedVersion) -> dict[str, Any]:
    return {
        "version": version.number,
        "registered_at": version.registered_at.isoformat(timespec="seconds"),
        "aliases": version.aliases,
        "run_id": version.run_id,
        "tags": version.tags,
        "record": version.require_record(),
        "model_card": version.model_card,
    }


def show_report(data: dict[str, Any]) -> Report:
    record = data["record"]
    code, lineage_data, gates = record["code"], record["data"], record["gates"]
    summary = Table(
        "Identity",
        ["field", "value"],
        [
            ["registered (UTC)", data["registered_at"]],
            ["aliases", data["aliases"]],
            ["MLflow run", data["run_id"]],
            ["variant", record["variant"]],
            ["backbone", record["backbone"]],
            ["model sha256", record["model_sha256"]],
            ["parent champion", _version(record["parent_champion"])],
            ["git commit", code["git_commit"]],
            ["uncommitted changes", code["git_dirty"]],
            ["params.yaml sha256", record["params"]["hash"]],
            ["dependency lock sha256", record["environment"]["lock_hash"]],
            ["raw drops DVC hash", lineage_data["raw_data_dvc_hash"]],
            ["validated manifest DVC hash", lineage_data["manifest_dvc_hash"]],
            ["splits DVC hash", lineage_data["splits_dvc_hash"]],
            ["images train/val/test", _per_split(lineage_data["images_per_split"])],
            ["classes", len(lineage_data["classes"])],
        ],
    )
    drops = Table(
        "Drops (dvc checkout of a drop's .dvc file restores it)",
        ["drop", "DVC hash", "files", "bytes", "dvc-tracked"],
        [
            [drop["drop"], drop["dvc_hash"], drop["files"], drop["bytes"], drop["tracked"]]
            for drop in lineage_data["drops"]
        ],
    )
    verdicts = Table(
        "Gates",
        ["gate", "verdict", "detail"],
        [
            [
                "validation",
                "passed" if gates["validation"]["success"] else "failed",
                _validation(gates["validation"]),
            ],
            ["promotion", gates["promotion"]["verdict"], gates["promotion"]["reason"]],
        ],
    )
    review = Table(
        f"Review decisions applied (from {REVIEW_FILE})",
        list(APPLIED_COLUMNS),
        [
            [decision.get(column) for column in APPLIED_COLUMNS]
            for decision in gates["validation"].get("review_decisions", [])
        ],
        "" if gates["validation"].get("review_decisions") else "No decision applied.",
    )
    metrics = Table(
        "Test metrics",
        ["metric", "value"],
        [[key, value] for key, value in record["metrics"].items() if not isinstance(value, dict)],
    )
    changed = (
        [f"Uncommitted diff recorded: {len(code['diff'])} characters."] if code["diff"] else []
    )
    return Report(
        f"{record['model_name']} v{data['version']}",
        [
            Section("Lineage", lines=changed, tables=[summary, drops, verdicts, review]),
            Section("Metrics", tables=[metrics]),
            Section("Model card", markdown=data["model_card"]),
        ],
    )


def diff_report(diff: dict[str, Any]) -> Report:
    before, after = diff["versions"]
    a, b = f"v{before['version']}", f"v{after['version']}"
    return Report(
        f"{diff['model_name']}: {a} → {b}",
        [
            _data_section(diff, a, b),
            _params_and_code_section(diff, a, b),
            _metrics_section(diff, a, b),
            _gates_section(diff, a, b),
            _images_section(diff, b),
        ],
    )


def reproduce_report(result: dict[str, Any]) -> Report:
    verdict = (
        "Every recorded metric was reproduced exactly."
        if result["all_equal"]
        else "Some values differ from the record: see the rows marked no."
    )
    restored = Table(
        "What was restored",
        ["what", "from", "detail", "equal"],
        [
            ["code", f"git worktree at {result['git_commit']}", result["code_detail"], True],
            ["params", "the recorded params.yaml", result["params_detail"], True],
            *(
                [
                    "drop " + drop["drop"],
                    "DVC cache by hash",
                    f"{drop['dvc_hash']}: {drop['check']}",
                    drop["restored"],
                ]
                for drop in result["drops"]
            ),
        ],
    )
    checks = Table(
        "Recorded against reproduced",
        ["value", "recorded", "reproduced", "equal"],
        [
            [row["name"], row["recorded"], row["reproduced"], row["equal"]]
            for row in result["checks"]
        ],
    )
    lines = [
        verdict,
        f"Re-ran dvc repro {result['target']} in {result['workdir']} in "
        f"{result['wall_s']:.0f} s; the working tree was not touched.",
    ]
    return Report(
        f"Reproduce {result['model_name']} v{result['version']}",
        [Section("Result", lines=lines, tables=[restored, checks])],
    )


def _data_section(diff: dict[str, Any], a: str, b: str) -> Section:
    drops = Table(
        "Drops",
        ["drop", "change", f"{a} DVC hash", f"{b} DVC hash"],
        [[row["drop"], row["change"], row["before"], row["after"]] for row in diff["drops"]],
    )
    added_by_class: dict[str, list[str]] = {}
    for image in diff["images_added"]:
        added_by_class.setdefault(image["label"], []).append(image["source_path"])
    classes = Table(
        "Images per class (by sha256)",
        ["class", a, b, "added", "removed", "status", "added images (first few)"],
        [
            [
                row["label"],
                row["before"],
                row["after"],
                row["added"],
                row["removed"],
                row["status"],
                _examples(added_by_class.get(row["label"], [])),
            ]
            for row in diff["classes"]
        ],
        note="Every added and removed image is named in --format json|md|html.",
    )
    relabelled = Table(
        f"Images whose label changed ({len(diff['label_changes'])})",
        ["source path", "sha256", f"label {a}", f"label {b}", f"coarse {a}", f"coarse {b}"],
        [
            [
                row["source_path"],
                row["sha256"][:SHORT_HASH],
                row["label_before"],
                row["label_after"],
                row["coarse_label_before"],
                row["coarse_label_after"],
            ]
            for row in diff["label_changes"]
        ],
    )
    new = [row["label"] for row in diff["classes"] if row["status"] == "new class"]
    gone = [row["label"] for row in diff["classes"] if row["status"] == "class gone"]
    lines = [
        f"{len(diff['images_added'])} image(s) added, {len(diff['images_removed'])} removed, "
        f"{len(diff['label_changes'])} relabelled.",
        f"New classes: {cell(new)}. Classes gone: {cell(gone)}.",
    ]
    return Section("Data", lines=lines, tables=[drops, classes, relabelled])


def _images_section(diff: dict[str, Any], b: str) -> Section:
    """Every added and removed image by name: long, so in the report files only."""
    image_columns = ["class", "source path", "sha256", "split", "drop"]
    tables = [
        Table(
            f"Images {change} in {b} ({len(diff[key])})",
            image_columns,
            [_image_row(image) for image in diff[key]],
            in_terminal=False,
        )
        for change, key in (("added", "images_added"), ("removed", "images_removed"))
    ]
    return Section("Images", tables=tables)


def _params_and_code_section(diff: dict[str, Any], a: str, b: str) -> Section:
    params = diff["params"]
    code = diff["code"]
    between = code["files_between_commits"]
    commits = code["commits"]
    if between is None:
        code_line = f"Files between commits {cell(commits)}: git does not hold both commits here."
    else:
        code_line = f"{len(between)} file(s) changed between the commits {cell(commits)}."
    lines = [
        "No params changed." if not params else f"{len(params)} param(s) changed.",
        code_line,
    ]
    for version, dirty, files in zip((a, b), code["dirty"], code["uncommitted_files"], strict=True):
        if dirty:
            lines.append(f"{version} was trained with uncommitted changes to: {cell(files)}.")
    tables = [
        Table(
            "Params changed",
            ["param", a, b],
            [[row["param"], literal(row["before"]), literal(row["after"])] for row in params],
        )
    ]
    if between:
        tables.append(
            Table(
                "Code changed between the commits",
                ["status", "path"],
                [[row["status"], row["path"]] for row in between],
            )
        )
    return Section("Params and code", lines=lines, tables=tables)


def _metrics_section(diff: dict[str, Any], a: str, b: str) -> Section:
    significance = diff["significance"]
    overall = Table(
        "Test metrics",
        ["metric", a, b, "change"],
        [
            [row["metric"], row["before"], row["after"], signed(row["delta"])]
            for row in diff["metrics"]
        ],
    )
    per_class = Table(
        "Per class",
        ["class", f"F1 {a}", f"F1 {b}", "F1 change", f"recall {a}", f"recall {b}", "support"],
        [
            [
                row["label"],
                row["f1_before"],
                row["f1_after"],
                signed(row["f1_delta"]),
                row["recall_before"],
                row["recall_after"],
                f"{cell(row['support_before'])} → {cell(row['support_after'])}",
            ]
            for row in diff["per_class"]
        ],
    )
    paired = Table(
        "Top-1 on the test images both versions were scored on",
        [
            "images",
            f"top-1 {a}",
            f"top-1 {b}",
            "change",
            f"only {a} right",
            f"only {b} right",
            "McNemar exact p",
            f"{significance['confidence_level']:.0%} bootstrap interval",
        ],
        [
            [
                significance["images"],
                significance["top1_a"],
                significance["top1_b"],
                signed(significance["difference"]),
                significance["only_a_right"],
                significance["only_b_right"],
                p_value(significance["mcnemar_p"]),
                f"[{signed(significance['interval_low'])}, "
                f"{signed(significance['interval_high'])}]",
            ]
        ],
        note=(
            f"Paired: {significance['resamples']} bootstrap resamples of the shared images; "
            f"{significance['relabelled_left_out']} shared image(s) left out for a changed label."
        ),
    )
    return Section("Metrics", tables=[overall, paired, per_class])


def _gates_section(diff: dict[str, Any], a: str, b: str) -> Section:
    gates_a, gates_b = diff["gates"]
    rows = [
        [
            "validation",
            _validation(gates_a["validation"]),
            _validation(gates_b["validation"]),
        ],
        [
            "promotion",
            f"{gates_a['promotion']['verdict']}: {gates_a['promotion']['reason']}",
            f"{gates_b['promotion']['verdict']}: {gates_b['promotion']['reason']}",
        ],
    ]
    return Section("Gates", tables=[Table("Gate verdicts", ["gate", a, b], rows)])


def _validation(gate: dict[str, Any]) -> str:
    verdict = "failed: " + cell(gate["failed_checks"]) if not gate["success"] else "passed"
    # Records written before warnings existed have none.
    warnings = gate.get("warnings") or []
    return f"{verdict}; warnings: {cell(warnings)}" if warnings else verdict


def _image_row(image: dict[str, str]) -> list[str]:
    return [
        image["label"],
        image["source_path"],
        image["sha256"][:SHORT_HASH],
        image["split"],
        image["drop"],
    ]


def _examples(paths: list[str]) -> str:
    shown = ", ".join(paths[:EXAMPLES_PER_CLASS])
    more = len(paths) - EXAMPLES_PER_CLASS
    return shown + (f" and {more} more" if more > 0 else "")


def _per_split(counts: dict[str, int]) -> str:
    return "/".join(str(counts[split]) for split in SPLITS)


def _short(value: str | None, length: int) -> str | None:
    return value[:length] if value else None


def _version(number: int | None) -> str | None:
    return None if number is None else f"v{number}"


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
