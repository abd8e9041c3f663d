"""The list, diff and reproduce reports, built from real lineage records and real comparisons and
read as Markdown."""

import hashlib
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prodcls_pipeline.audit.comparison import compare_versions
from prodcls_pipeline.audit.documents import to_markdown
from prodcls_pipeline.audit.reports import (
    diff_report,
    list_report,
    reproduce_report,
    show_data,
    show_report,
    version_row,
)
from prodcls_pipeline.audit.versions import AuditedVersion
from prodcls_pipeline.release.lineage import IMAGE_COLUMNS, lineage_record

PARAMS = {"seed": 7, "train": {"learning_rate": 0.003, "weight_decay": 0.0001}}
TEST_IMAGES = [f"t{number}" for number in range(10)]


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def images(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """An image table (`IMAGE_COLUMNS`) from (name, label, split, drop)."""
    table = pd.DataFrame(
        [
            (sha(name), label, "fruit", split, drop, f"{drop}/{label}/{name}.jpg")
            for name, label, split, drop in rows
        ],
        columns=list(IMAGE_COLUMNS),
    )
    return table.sort_values("sha256").reset_index(drop=True)


# Ten apple test images in both versions; v2 adds four apples and a new class, mango, from a new
# drop d3, and no longer has kiwi (drop d2).
IMAGES_V1 = images(
    [
        ("a1", "apple", "train", "d1"),
        ("a2", "apple", "train", "d1"),
        ("p1", "pear", "val", "d1"),
        ("k1", "kiwi", "train", "d2"),
        *((name, "apple", "test", "d1") for name in TEST_IMAGES),
    ]
)
IMAGES_V2 = images(
    [
        ("a1", "apple", "train", "d1"),
        ("a2", "apple", "train", "d1"),
        *((f"a{number}", "apple", "train", "d3") for number in range(3, 7)),
        ("p1", "pear", "val", "d1"),
        ("m1", "mango", "train", "d3"),
        ("m2", "mango", "test", "d3"),
        *((name, "apple", "test", "d1") for name in TEST_IMAGES),
    ]
)


def predictions(right: int) -> pd.DataFrame:
    """Test predictions of a model right on the first `right` of the ten apple test images."""
    return pd.DataFrame(
        {
            "sha256": [sha(name) for name in TEST_IMAGES],
            "label": ["apple"] * len(TEST_IMAGES),
            "predicted": ["apple"] * right + ["pear"] * (len(TEST_IMAGES) - right),
        }
    )


def git(root: Path, *args: str) -> str:
    identity = {"GIT_AUTHOR_NAME": "audit", "GIT_AUTHOR_EMAIL": "audit@example.com"}
    identity |= {"GIT_COMMITTER_NAME": "audit", "GIT_COMMITTER_EMAIL": "audit@example.com"}
    result = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **identity},
    )
    return result.stdout.strip()


def record(
    root: Path,
    version: int,
    table: pd.DataFrame,
    drops: dict[str, str],
    parameters: dict[str, Any],
    top1: float,
    dirty: bool = False,
    validation_report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The lineage record the package stage keeps for `version`, made in `root` at its HEAD."""
    return lineage_record(
        registration={"model_name": "prodcls", "version": version, "run_id": f"run{version}"},
        package_lineage={
            "variant": "head",
            "backbone": "efficientnet_lite0",
            "model_sha256": sha(f"model{version}"),
            "git_commit": git(root, "rev-parse", "HEAD"),
            "git_dirty": dirty,
            "git_repo": True,
            "drops": [
                {"drop": drop, "dvc_hash": dvc_hash, "files": 4, "bytes": 4096, "tracked": True}
                for drop, dvc_hash in drops.items()
            ],
            "raw_data_dvc_hash": f"{version}" * 32 + ".dir",
            "manifest_dvc_hash": "b" * 32,
            "splits_dvc_hash": "c" * 32,
            "params_hash": sha(str(parameters)),
            "lock_hash": "d" * 64,
        },
        promotion={
            "verdict": "promoted",
            "reason": f"top-1 {top1:.4f} clears the floor",
            "champion": {"version": version - 1} if version > 1 else None,
        },
        validation_report=validation_report
        or {"success": True, "checks": [{"name": "labels", "success": True}]},
        metrics={"test_images": 10, "top1": top1, "macro_f1": top1 - 0.1, "coarse_top1": None},
        per_class={"apple": {"precision": 1.0, "recall": top1, "f1": top1, "support": 10}},
        images=table,
        parameters=parameters,
        root=root,
    )


def version(number: int, lineage: dict[str, Any] | None, aliases: list[str]) -> AuditedVersion:
    """A registered version; `client` is None, so anything that downloads would fail."""
    return AuditedVersion(
        model_name="prodcls",
        number=number,
        run_id=f"run{number}",
        registered_at=datetime(2024, number, 1, 10, 0, tzinfo=UTC),
        aliases=aliases,
        tags={"git_commit": "f" * 40, "test_top1": "0.8100", "promotion_verdict": "promoted"},
        record=lineage,
        client=None,
    )


def with_tables(
    audited: AuditedVersion, table: pd.DataFrame, scored: pd.DataFrame
) -> AuditedVersion:
    """The version with its image table and test predictions already at hand, as after their
    first (cached) download."""
    audited.__dict__.update(images=table, test_predictions=scored)
    return audited


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository with the project's params.yaml and a training script."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "--quiet")
    (root / "params.yaml").write_text("seed: 7\n")
    (root / "train.py").write_text("epochs = 1\n")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "v1")
    return root


def diff(
    root: Path,
    params_v2: dict[str, Any] = PARAMS,
    new_commit: bool = False,
    dirty: bool = False,
    repo_root: Path | None = None,
) -> dict[str, Any]:
    """`compare_versions` of v1 and v2 of the scenario above: v2 made at a new commit, with an
    uncommitted change, or both, and compared in `repo_root` (default: `root`)."""
    v1 = record(root, 1, IMAGES_V1, {"d1": "h1.dir", "d2": "h2.dir"}, PARAMS, top1=0.5)
    if new_commit:
        (root / "train.py").write_text("epochs = 2\n")
        git(root, "commit", "--quiet", "-am", "v2")
    if dirty:
        (root / "train.py").write_text("epochs = 5\n")
    drops_v2 = {"d1": "h1.dir", "d3": "h3.dir"}
    v2 = record(root, 2, IMAGES_V2, drops_v2, params_v2, top1=1.0, dirty=dirty)
    return compare_versions(
        with_tables(version(1, v1, []), IMAGES_V1, predictions(5)),
        with_tables(version(2, v2, ["champion"]), IMAGES_V2, predictions(10)),
        repo_root=repo_root or root,
        resamples=2000,
        confidence_level=0.95,
        seed=3,
    )


def test_the_diff_names_new_and_gone_classes_and_counts_images(project: Path) -> None:
    text = to_markdown(diff_report(diff(project)))

    assert text.startswith("# prodcls: v1 → v2\n")
    assert "6 image(s) added, 1 removed, 0 relabelled." in text
    assert "New classes: mango. Classes gone: kiwi." in text
    assert "| mango | 0 | 2 | 2 | 0 | new class | d3/mango/m1.jpg, d3/mango/m2.jpg |" in text
    assert "| kiwi | 1 | 0 | 0 | 1 | class gone | – |" in text


def test_the_diff_names_the_first_few_added_images_of_each_class(project: Path) -> None:
    text = to_markdown(diff_report(diff(project)))

    examples = "d3/apple/a3.jpg, d3/apple/a4.jpg, d3/apple/a5.jpg and 1 more"
    assert f"| apple | 12 | 16 | 4 | 0 | – | {examples} |" in text
    assert "### Images added in v2 (6)" in text
    assert f"| apple | d3/apple/a6.jpg | {sha('a6')[:12]} | train | d3 |" in text
    assert f"| kiwi | d2/kiwi/k1.jpg | {sha('k1')[:12]} | train | d2 |" in text


def test_the_diff_lists_the_drops_each_version_used(project: Path) -> None:
    text = to_markdown(diff_report(diff(project)))

    assert "| drop | change | v1 DVC hash | v2 DVC hash |" in text
    assert "| d1 | – | h1.dir | h1.dir |" in text
    assert "| d2 | removed | h2.dir | – |" in text
    assert "| d3 | added | – | h3.dir |" in text


def test_the_diff_says_no_params_changed_when_they_are_equal(project: Path) -> None:
    text = to_markdown(diff_report(diff(project)))

    assert "No params changed." in text
    assert "0 file(s) changed between the commits" in text


def test_the_diff_lists_a_changed_param_and_the_code_changed_between_commits(
    project: Path,
) -> None:
    faster = {"seed": 7, "train": {"learning_rate": 0.01, "weight_decay": 0.0001}}

    text = to_markdown(diff_report(diff(project, faster, new_commit=True)))

    assert "1 param(s) changed." in text
    assert "| train.learning_rate | 0.003 | 0.01 |" in text
    assert "1 file(s) changed between the commits" in text
    assert "| M | train.py |" in text


def test_the_diff_names_the_files_of_a_recorded_uncommitted_change(project: Path) -> None:
    text = to_markdown(diff_report(diff(project, dirty=True)))

    assert "v2 was trained with uncommitted changes to: train.py." in text
    assert "v1 was trained with uncommitted changes" not in text


def test_the_diff_says_when_git_does_not_hold_both_commits(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-a-repository"
    elsewhere.mkdir()

    text = to_markdown(diff_report(diff(project, new_commit=True, repo_root=elsewhere)))

    assert "git does not hold both commits here." in text
    assert "Code changed between the commits" not in text


def test_the_diff_shows_the_paired_test_and_its_exact_mcnemar_p(project: Path) -> None:
    report_data = diff(project)
    significance = report_data["significance"]

    text = to_markdown(diff_report(report_data))

    # v1 is right on 5 of the 10 shared test images, v2 on all of them: p = 2 · 0.5⁵.
    assert significance["mcnemar_p"] == pytest.approx(0.0625)
    assert "| 10 | 0.5000 | 1.0000 | +0.5000 | 0 | 5 | 0.0625 | \\[+" in text
    assert "| McNemar exact p | 95% bootstrap interval |" in text
    low, high = significance["interval_low"], significance["interval_high"]
    assert f"\\[{low:+.4f}, {high:+.4f}\\]" in text
    assert "2000 bootstrap resamples of the shared images; 0 shared image(s) left out" in text


def test_the_diff_shows_metric_changes_and_both_gates(project: Path) -> None:
    text = to_markdown(diff_report(diff(project)))

    assert "| top1 | 0.5000 | 1.0000 | +0.5000 |" in text
    assert "| coarse_top1 | – | – | – |" in text
    assert "| apple | 0.5000 | 1.0000 | +0.5000 | 0.5000 | 1.0000 | 10 → 10 |" in text
    assert "| validation | passed | passed |" in text
    assert "| promotion | promoted: top-1 0.5000 clears the floor |" in text


def test_the_diff_shows_a_changed_small_param_as_two_different_values(project: Path) -> None:
    smaller = {"seed": 7, "train": {"learning_rate": 0.003, "weight_decay": 0.00015}}

    text = to_markdown(diff_report(diff(project, smaller)))

    (row,) = [line for line in text.splitlines() if line.startswith("| train.weight_decay |")]
    before, after = (value.strip() for value in row.strip("|").split("|")[1:])
    assert before != after


def test_show_lists_the_validation_warnings_and_the_review_decisions_applied(
    project: Path,
) -> None:
    relabelled = {
        "sha256": sha("a1"),
        "decision": "relabel",
        "old_label": "apple",
        "new_label": "pear",
        "rows": 1,
        "note": "checked: a pear",
    }
    validation_report = {
        "success": True,
        "checks": [
            {"name": "labels", "success": True},
            {"name": "class distribution (drop-002)", "success": True, "warning": True},
        ],
        "review": {"file": "data/01_raw/review_decisions.csv", "applied": [relabelled]},
    }
    lineage = record(
        project, 1, IMAGES_V1, {"d1": "h1.dir"}, PARAMS, 0.5, validation_report=validation_report
    )
    audited = version(1, lineage, ["champion"])
    audited.__dict__.update(model_card="# card")

    text = to_markdown(show_report(show_data(audited)))

    assert "| validation | passed | passed; warnings: class distribution (drop-002) |" in text
    assert "Review decisions applied (from data/01_raw/review_decisions.csv)" in text
    assert f"| {sha('a1')} | relabel | apple | pear | 1 | checked: a pear |" in text


def test_show_says_when_no_review_decision_was_applied(project: Path) -> None:
    audited = version(1, record(project, 1, IMAGES_V1, {"d1": "h1.dir"}, PARAMS, 0.5), [])
    audited.__dict__.update(model_card="# card")

    text = to_markdown(show_report(show_data(audited)))

    assert "| validation | passed | passed |" in text
    assert "No decision applied." in text


def test_version_row_of_a_version_without_a_record_reads_its_tags() -> None:
    row = version_row(version(1, None, []))

    assert row == {
        "version": 1,
        "registered_at": "2024-01-01T10:00:00+00:00",
        "aliases": [],
        "lineage_record": False,
        "git_commit": "f" * 40,
        "top1": 0.81,
        "promotion": "promoted",
    }


def test_version_row_of_a_version_without_a_record_tolerates_odd_tags() -> None:
    old = version(1, None, [])
    old.tags = {"test_top1": "n/a"}

    row = version_row(old)

    assert (row["git_commit"], row["top1"], row["promotion"]) == ("", None, "")


def test_version_row_of_a_version_with_a_record_reads_the_record(project: Path) -> None:
    lineage = record(project, 2, IMAGES_V2, {"d1": "h1.dir", "d3": "h3.dir"}, PARAMS, top1=0.9)

    row = version_row(version(2, lineage, ["champion"]))

    assert row == {
        "version": 2,
        "registered_at": "2024-02-01T10:00:00+00:00",
        "aliases": ["champion"],
        "lineage_record": True,
        "drops": ["d1", "d3"],
        "images_per_split": {"train": 7, "val": 1, "test": 11},
        "data_hash": "2" * 32 + ".dir",
        "params_hash": sha(str(PARAMS)),
        "git_commit": git(project, "rev-parse", "HEAD"),
        "git_dirty": False,
        "top1": 0.9,
        "macro_f1": pytest.approx(0.8),
        "coarse_top1": None,
        "validation": "passed",
        "promotion": "promoted",
        "parent_champion": 1,
    }


def test_the_list_shows_every_version_and_names_those_without_a_record(project: Path) -> None:
    lineage = record(project, 2, IMAGES_V2, {"d1": "h1.dir", "d3": "h3.dir"}, PARAMS, top1=0.9)
    commit = git(project, "rev-parse", "HEAD")
    rows = [version_row(version(1, None, [])), version_row(version(2, lineage, ["champion"]))]

    text = to_markdown(list_report("prodcls", rows))

    assert text.startswith("# Model versions of prodcls\n\n## 2 version(s)\n")
    assert "| v1 | 2024-01-01T10:00:00 | – | – | – | – | – | ffffffffff | – | 0.8100 |" in text
    assert (
        f"| v2 | 2024-02-01T10:00:00 | champion | d1, d3 | 7/1/11 | {'2' * 12} | "
        f"{sha(str(PARAMS))[:12]} | {commit[:10]} | no | 0.9000 | 0.8000 | – | passed | "
        "promoted |"
    ) in text
    assert "_No lineage record (registered before records were kept): v1._" in text


def test_the_list_has_no_note_when_every_version_has_a_record(project: Path) -> None:
    lineage = record(project, 1, IMAGES_V1, {"d1": "h1.dir"}, PARAMS, top1=0.9)

    text = to_markdown(list_report("prodcls", [version_row(version(1, lineage, []))]))

    assert "No lineage record" not in text


def check(name: str, recorded: Any, reproduced: Any) -> dict[str, Any]:
    return {
        "name": name,
        "recorded": recorded,
        "reproduced": reproduced,
        "equal": recorded == reproduced,
    }


def reproduction(checks: list[dict[str, Any]], restored: bool = True) -> dict[str, Any]:
    """A `reproduce_version` result with these checks."""
    drop = {"drop": "d1", "dvc_hash": "h1.dir", "restored": restored}
    drop["check"] = "restored byte for byte" if restored else "content hashes to h9.dir"
    return {
        "model_name": "prodcls",
        "version": 3,
        "target": "evaluate",
        "git_commit": "a" * 40,
        "code_detail": "clean commit: no uncommitted changes were recorded",
        "params_detail": f"sha256 {'e' * 64} matches",
        "drops": [drop],
        "checks": checks,
        "all_equal": all(row["equal"] for row in checks) and restored,
        "wall_s": 42.4,
        "workdir": "a temporary folder (removed)",
    }


def test_a_reproduction_with_every_value_equal_says_so() -> None:
    result = reproduction([check("splits DVC hash", "c" * 32, "c" * 32), check("top1", 0.8, 0.8)])

    text = to_markdown(reproduce_report(result))

    assert text.startswith("# Reproduce prodcls v3\n")
    assert "Every recorded metric was reproduced exactly." in text
    assert "in a temporary folder (removed) in 42 s; the working tree was not touched." in text
    assert f"| code | git worktree at {'a' * 40} | clean commit" in text
    assert "| drop d1 | DVC cache by hash | h1.dir: restored byte for byte |" in text
    assert "| top1 | 0.8000 | 0.8000 | yes |" in text
    assert "| no |" not in text


def test_a_reproduction_with_an_unequal_value_marks_that_row() -> None:
    result = reproduction([check("top1", 0.8123, 0.81), check("macro_f1", 0.7, 0.7)])

    text = to_markdown(reproduce_report(result))

    assert "Some values differ from the record: see the rows marked no." in text
    assert "| top1 | 0.8123 | 0.8100 | no |" in text
    assert "| macro_f1 | 0.7000 | 0.7000 | yes |" in text


def test_a_reproduction_with_a_drop_not_restored_marks_a_row_no() -> None:
    result = reproduction([check("top1", 0.8, 0.8)], restored=False)

    text = to_markdown(reproduce_report(result))

    assert "see the rows marked no" in text
    assert "| no |" in text
