"""What differs between two model versions: drops, images per class (by sha256), labels, params,
code, metrics overall and per class, the significance of the top-1 difference, and the gates.

Every function takes the two versions' records or tables and returns plain data (lists of
dicts), so the same comparison renders as a terminal table, Markdown, HTML or JSON.
"""

from pathlib import Path
from typing import Any

import pandas as pd

from prodcls_pipeline.audit.significance import compare_paired
from prodcls_pipeline.audit.versions import AuditedVersion
from prodcls_pipeline.core.numbers import round_metric
from prodcls_pipeline.release.lineage import changed_files, patched_files

NEW_CLASS, GONE_CLASS = "new class", "class gone"
ADDED, REMOVED, CHANGED = "added", "removed", "changed"


def compare_versions(
    a: AuditedVersion,
    b: AuditedVersion,
    repo_root: Path,
    resamples: int,
    confidence_level: float,
    seed: int,
) -> dict[str, Any]:
    """The full comparison of version `a` (before) with version `b` (after)."""
    record_a, record_b = a.require_record(), b.require_record()
    images_a, images_b = a.images, b.images
    return {
        "model_name": a.model_name,
        "versions": [version_summary(a), version_summary(b)],
        "drops": drop_changes(record_a["data"]["drops"], record_b["data"]["drops"]),
        "classes": class_changes(images_a, images_b),
        "images_added": image_rows(images_b, set(images_b["sha256"]) - set(images_a["sha256"])),
        "images_removed": image_rows(images_a, set(images_a["sha256"]) - set(images_b["sha256"])),
        "label_changes": label_changes(images_a, images_b),
        "params": params_changes(record_a["params"]["values"], record_b["params"]["values"]),
        "code": code_changes(record_a["code"], record_b["code"], repo_root),
        "metrics": metric_deltas(record_a["metrics"], record_b["metrics"]),
        "per_class": per_class_deltas(record_a["per_class"], record_b["per_class"]),
        "significance": paired_significance(
            a.test_predictions, b.test_predictions, resamples, confidence_level, seed
        ),
        "gates": [record_a["gates"], record_b["gates"]],
    }


def version_summary(version: AuditedVersion) -> dict[str, Any]:
    record = version.require_record()
    return {
        "version": version.number,
        "registered_at": version.registered_at.isoformat(timespec="seconds"),
        "aliases": version.aliases,
        "git_commit": record["code"]["git_commit"],
        "git_dirty": record["code"]["git_dirty"],
        "params_hash": record["params"]["hash"],
        "raw_data_dvc_hash": record["data"]["raw_data_dvc_hash"],
    }


def drop_changes(drops_a: list[dict], drops_b: list[dict]) -> list[dict[str, Any]]:
    """Every drop in either version: added, removed, changed (same id, other content) or kept."""
    hashes_a = {drop["drop"]: drop["dvc_hash"] for drop in drops_a}
    hashes_b = {drop["drop"]: drop["dvc_hash"] for drop in drops_b}
    rows = []
    for drop in sorted(hashes_a.keys() | hashes_b.keys()):
        before, after = hashes_a.get(drop), hashes_b.get(drop)
        if before is None:
            change = ADDED
        elif after is None:
            change = REMOVED
        else:
            change = CHANGED if before != after else ""
        rows.append({"drop": drop, "change": change, "before": before, "after": after})
    return rows


def class_changes(images_a: pd.DataFrame, images_b: pd.DataFrame) -> list[dict[str, Any]]:
    """Per class: images before and after, how many were added and removed (by sha256), and
    whether the class is new or gone."""
    rows = []
    for label in sorted(set(images_a["label"]) | set(images_b["label"])):
        before = set(images_a.loc[images_a["label"] == label, "sha256"])
        after = set(images_b.loc[images_b["label"] == label, "sha256"])
        status = NEW_CLASS if not before else GONE_CLASS if not after else ""
        rows.append(
            {
                "label": label,
                "before": len(before),
                "after": len(after),
                "added": len(after - before),
                "removed": len(before - after),
                "status": status,
            }
        )
    return rows


def image_rows(images: pd.DataFrame, sha256s: set[str]) -> list[dict[str, str]]:
    """The images with these hashes, by class then source path."""
    chosen = images.loc[images["sha256"].isin(sha256s)]
    return chosen.sort_values(["label", "source_path"]).to_dict("records")


def label_changes(images_a: pd.DataFrame, images_b: pd.DataFrame) -> list[dict[str, str]]:
    """Images (same sha256) whose fine or coarse label differs between the two versions."""
    both = images_a.merge(images_b, on="sha256", suffixes=("_before", "_after"))
    changed = both.loc[
        (both["label_before"] != both["label_after"])
        | (both["coarse_label_before"] != both["coarse_label_after"])
    ]
    return [
        {
            "sha256": row.sha256,
            "source_path": row.source_path_after,
            "label_before": row.label_before,
            "label_after": row.label_after,
            "coarse_label_before": row.coarse_label_before,
            "coarse_label_after": row.coarse_label_after,
        }
        for row in changed.sort_values("sha256").itertuples()
    ]


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys, the way `dvc exp run -S` and dvc.yaml name them."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def params_changes(params_a: dict[str, Any], params_b: dict[str, Any]) -> list[dict[str, Any]]:
    flat_a, flat_b = flatten(params_a), flatten(params_b)
    return [
        {"param": key, "before": flat_a.get(key), "after": flat_b.get(key)}
        for key in sorted(flat_a.keys() | flat_b.keys())
        if _typed(flat_a, key) != _typed(flat_b, key)
    ]


def _typed(values: dict[str, Any], key: str) -> tuple[bool, type, Any]:
    """A param as compared: present or not, its type, its value (so `1` differs from `True`)."""
    value = values.get(key)
    return key in values, type(value), value


def code_changes(code_a: dict[str, Any], code_b: dict[str, Any], repo_root: Path) -> dict:
    """Files changed between the two commits (from git), and the files each version's recorded
    uncommitted diff touched."""
    commit_a, commit_b = code_a["git_commit"], code_b["git_commit"]
    between: list[dict[str, str]] | None = None
    if commit_a and commit_a == commit_b:
        between = []
    elif commit_a and commit_b:
        between = changed_files(repo_root, commit_a, commit_b)
    return {
        "commits": [commit_a, commit_b],
        "dirty": [code_a["git_dirty"], code_b["git_dirty"]],
        "files_between_commits": between,
        "uncommitted_files": [patched_files(code_a["diff"]), patched_files(code_b["diff"])],
    }


def metric_deltas(metrics_a: dict[str, Any], metrics_b: dict[str, Any]) -> list[dict[str, Any]]:
    """Every numeric metric either version recorded, with the change (after − before)."""
    rows = []
    for key in [*metrics_a, *(key for key in metrics_b if key not in metrics_a)]:
        before, after = metrics_a.get(key), metrics_b.get(key)
        if not all(isinstance(value, int | float | None) for value in (before, after)):
            continue
        delta = _delta(before, after)
        rows.append({"metric": key, "before": before, "after": after, "delta": delta})
    return rows


def per_class_deltas(
    per_class_a: dict[str, dict], per_class_b: dict[str, dict]
) -> list[dict[str, Any]]:
    """Per class: F1 and recall before and after, and their changes; test support of each."""
    rows = []
    for label in sorted(per_class_a.keys() | per_class_b.keys()):
        before, after = per_class_a.get(label, {}), per_class_b.get(label, {})
        row: dict[str, Any] = {"label": label}
        for metric in ("f1", "recall"):
            old, new = before.get(metric), after.get(metric)
            row |= {
                f"{metric}_before": old,
                f"{metric}_after": new,
                f"{metric}_delta": _delta(old, new),
            }
        row |= {"support_before": before.get("support"), "support_after": after.get("support")}
        rows.append(row)
    return rows


def paired_significance(
    predictions_a: pd.DataFrame,
    predictions_b: pd.DataFrame,
    resamples: int,
    confidence_level: float,
    seed: int,
) -> dict[str, Any]:
    """McNemar and bootstrap on the test images both versions were scored on with the same
    label; images whose label changed are left out and counted."""
    both = predictions_a.merge(predictions_b, on="sha256", suffixes=("_a", "_b"))
    same_label = both["label_a"] == both["label_b"]
    shared = both.loc[same_label]
    comparison = compare_paired(
        (shared["predicted_a"] == shared["label_a"]).to_numpy(),
        (shared["predicted_b"] == shared["label_b"]).to_numpy(),
        resamples=resamples,
        confidence_level=confidence_level,
        seed=seed,
    )
    return {
        **comparison.to_dict(),
        "test_images": [len(predictions_a), len(predictions_b)],
        "relabelled_left_out": int((~same_label).sum()),
    }


def _delta(before: float | None, after: float | None) -> float | None:
    """after − before of two reported metrics, without float noise in the last digits; counts
    stay whole numbers."""
    if before is None or after is None:
        return None
    if isinstance(before, int) and isinstance(after, int):
        return after - before
    return round_metric(after - before)
