"""What differs between two model versions, from their images, predictions and lineage records."""

import hashlib
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from prodcls_pipeline.audit.comparison import (
    class_changes,
    code_changes,
    drop_changes,
    flatten,
    image_rows,
    label_changes,
    metric_deltas,
    paired_significance,
    params_changes,
    per_class_deltas,
)
from prodcls_pipeline.release.lineage import IMAGE_COLUMNS, git_diff

# (name, label, coarse label, split, drop): the images each version learnt from or was tested on.
BEFORE = [
    ("a1", "apple", "fruit", "train", "d1"),
    ("a2", "apple", "fruit", "train", "d1"),
    ("a3", "apple", "fruit", "test", "d1"),
    ("p1", "pear", "fruit", "train", "d2"),
    ("p2", "pear", "fruit", "test", "d2"),
    ("o1", "oat-milk", "dairy", "train", "d2"),
    ("k1", "kiwi", "fruit", "test", "d3"),
]
AFTER = [
    ("a1", "apple", "fruit", "train", "d1"),
    ("a2", "apple", "fruit", "train", "d1"),
    ("a3", "apple", "fruit", "test", "d1"),
    ("a4", "apple", "fruit", "val", "d4"),
    ("p1", "pear", "fruit", "train", "d2"),
    ("p2", "apple", "fruit", "test", "d2"),  # relabelled: pear → apple
    ("o1", "oat-milk", "plant-milk", "train", "d2"),  # coarse label only
    ("m2", "mango", "fruit", "train", "d4"),
    ("m1", "mango", "fruit", "test", "d4"),
]


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def images(rows: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    """An image table as the lineage record keeps it (`IMAGE_COLUMNS`, sorted by sha256)."""
    table = pd.DataFrame(
        [
            (sha(name), label, coarse, split, drop, f"{drop}/{label}/{name}.jpg")
            for name, label, coarse, split, drop in rows
        ],
        columns=list(IMAGE_COLUMNS),
    )
    return table.sort_values("sha256").reset_index(drop=True)


def predictions(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Test predictions (name, true label, predicted label), with the columns the evaluate stage
    writes beside them."""
    return pd.DataFrame(
        {
            "sha256": [sha(name) for name, _, _ in rows],
            "label": [label for _, label, _ in rows],
            "coarse_label": ["fruit"] * len(rows),
            "predicted": [predicted for _, _, predicted in rows],
            "confidence": [0.9] * len(rows),
        }
    )


def git(root: Path, *args: str) -> str:
    environment = {
        **os.environ,
        "GIT_AUTHOR_NAME": "audit",
        "GIT_AUTHOR_EMAIL": "audit@example.com",
        "GIT_COMMITTER_NAME": "audit",
        "GIT_COMMITTER_EMAIL": "audit@example.com",
    }
    result = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    return result.stdout.strip()


def code(commit: str, diff: str = "") -> dict:
    return {"git_commit": commit, "git_dirty": bool(diff), "git_repo": True, "diff": diff}


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A git repository with two commits: the second edits train.py, adds new.py and deletes
    README.md."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "--quiet")
    (root / "train.py").write_text("epochs = 1\n")
    (root / "README.md").write_text("# notes\n")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "first")
    first = git(root, "rev-parse", "HEAD")
    (root / "train.py").write_text("epochs = 2\n")
    (root / "new.py").write_text("print('new')\n")
    (root / "README.md").unlink()
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "second")
    return root, first, git(root, "rev-parse", "HEAD")


def test_class_changes_counts_images_by_sha256_and_marks_new_and_gone_classes() -> None:
    rows = class_changes(images(BEFORE), images(AFTER))

    assert rows == [
        {"label": "apple", "before": 3, "after": 5, "added": 2, "removed": 0, "status": ""},
        {
            "label": "kiwi",
            "before": 1,
            "after": 0,
            "added": 0,
            "removed": 1,
            "status": "class gone",
        },
        {
            "label": "mango",
            "before": 0,
            "after": 2,
            "added": 2,
            "removed": 0,
            "status": "new class",
        },
        {"label": "oat-milk", "before": 1, "after": 1, "added": 0, "removed": 0, "status": ""},
        {"label": "pear", "before": 2, "after": 1, "added": 0, "removed": 1, "status": ""},
    ]


def test_image_rows_lists_the_chosen_images_by_class_then_source_path() -> None:
    after = images(AFTER)
    added = set(after["sha256"]) - set(images(BEFORE)["sha256"])

    rows = image_rows(after, added)

    assert [row["source_path"] for row in rows] == [
        "d4/apple/a4.jpg",
        "d4/mango/m1.jpg",
        "d4/mango/m2.jpg",
    ]
    assert rows[1] == {
        "sha256": sha("m1"),
        "label": "mango",
        "coarse_label": "fruit",
        "split": "test",
        "drop": "d4",
        "source_path": "d4/mango/m1.jpg",
    }
    assert image_rows(after, set()) == []


def test_label_changes_reports_an_image_relabelled_between_versions_with_both_labels() -> None:
    before = images(BEFORE)
    after = images(AFTER)
    # The relabelled image moved to another folder of the same drop in the new version.
    after.loc[after["sha256"] == sha("p2"), "source_path"] = "d2/apple/p2.jpg"

    changes = label_changes(before, after)

    relabelled = [row for row in changes if row["sha256"] == sha("p2")]
    assert relabelled == [
        {
            "sha256": sha("p2"),
            "source_path": "d2/apple/p2.jpg",
            "label_before": "pear",
            "label_after": "apple",
            "coarse_label_before": "fruit",
            "coarse_label_after": "fruit",
        }
    ]


def test_label_changes_reports_a_coarse_label_only_change_and_nothing_else() -> None:
    changes = label_changes(images(BEFORE), images(AFTER))

    assert sorted(row["sha256"] for row in changes) == sorted([sha("p2"), sha("o1")])
    assert [row["sha256"] for row in changes] == sorted(row["sha256"] for row in changes)
    (coarse,) = [row for row in changes if row["sha256"] == sha("o1")]
    assert (coarse["label_before"], coarse["label_after"]) == ("oat-milk", "oat-milk")
    assert (coarse["coarse_label_before"], coarse["coarse_label_after"]) == (
        "dairy",
        "plant-milk",
    )


def test_label_changes_is_empty_for_identical_tables() -> None:
    assert label_changes(images(BEFORE), images(BEFORE)) == []


def test_drop_changes_marks_added_removed_changed_and_unchanged_drops() -> None:
    def drop(name: str, dvc_hash: str) -> dict:
        return {"drop": name, "dvc_hash": dvc_hash, "files": 3, "bytes": 900, "tracked": True}

    before = [drop("d1", "h1.dir"), drop("d2", "h2.dir"), drop("d3", "h3.dir")]
    after = [drop("d4", "h4.dir"), drop("d1", "h1.dir"), drop("d2", "h2-new.dir")]

    assert drop_changes(before, after) == [
        {"drop": "d1", "change": "", "before": "h1.dir", "after": "h1.dir"},
        {"drop": "d2", "change": "changed", "before": "h2.dir", "after": "h2-new.dir"},
        {"drop": "d3", "change": "removed", "before": "h3.dir", "after": None},
        {"drop": "d4", "change": "added", "before": None, "after": "h4.dir"},
    ]


def test_flatten_dots_nested_keys_and_keeps_an_empty_section_as_a_value() -> None:
    params = {"seed": 7, "train": {"lr": 0.001, "optim": {"name": "adam"}}, "hooks": {}}

    assert flatten(params) == {
        "seed": 7,
        "train.lr": 0.001,
        "train.optim.name": "adam",
        "hooks": {},
    }


def test_params_changes_lists_changed_added_and_removed_keys_only() -> None:
    before = {"seed": 7, "train": {"lr": 0.001, "epochs": 5, "warmup": 1}, "hooks": {}}
    after = {"seed": 7, "train": {"lr": 0.002, "epochs": 5, "mixup": 0.2}, "hooks": {}}

    assert params_changes(before, after) == [
        {"param": "train.lr", "before": 0.001, "after": 0.002},
        {"param": "train.mixup", "before": None, "after": 0.2},
        {"param": "train.warmup", "before": 1, "after": None},
    ]
    assert params_changes(before, before) == []


def test_params_changes_tells_a_null_param_from_an_absent_one() -> None:
    assert params_changes({}, {"resume": None}) == [
        {"param": "resume", "before": None, "after": None}
    ]


def test_params_changes_sees_an_empty_section_filled_in() -> None:
    assert params_changes({"hooks": {}}, {"hooks": {"on_epoch": "log"}}) == [
        {"param": "hooks", "before": {}, "after": None},
        {"param": "hooks.on_epoch", "before": None, "after": "log"},
    ]


def test_metric_deltas_keeps_numeric_metrics_in_order_and_rounds_the_change() -> None:
    before = {
        "test_images": 100,
        "top1": 0.8123,
        "coarse_top1": None,
        "confusion": {"apple": {"pear": 2}},
        "variant": "lite0",
        "macro_f1": 0.7,
    }
    after = {
        "test_images": 120,
        "top1": 0.8456,
        "coarse_top1": 0.9,
        "confusion": {"apple": {"pear": 1}},
        "variant": "lite0",
        "top5": 0.97,
    }

    assert metric_deltas(before, after) == [
        {"metric": "test_images", "before": 100, "after": 120, "delta": 20.0},
        {"metric": "top1", "before": 0.8123, "after": 0.8456, "delta": 0.0333},
        {"metric": "coarse_top1", "before": None, "after": 0.9, "delta": None},
        {"metric": "macro_f1", "before": 0.7, "after": None, "delta": None},
        {"metric": "top5", "before": None, "after": 0.97, "delta": None},
    ]


def test_metric_deltas_skips_a_metric_numeric_in_one_version_only() -> None:
    rows = metric_deltas({"top1": 0.8, "note": 0.5}, {"top1": 0.8, "note": "n/a"})

    assert rows == [{"metric": "top1", "before": 0.8, "after": 0.8, "delta": 0.0}]


def test_per_class_deltas_covers_every_class_of_either_version() -> None:
    before = {
        "apple": {"precision": 0.9, "recall": 0.75, "f1": 0.8182, "support": 4},
        "kiwi": {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1},
    }
    after = {
        "apple": {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 5},
        "mango": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2},
    }

    assert per_class_deltas(before, after) == [
        {
            "label": "apple",
            **{"f1_before": 0.8182, "f1_after": 0.8, "f1_delta": -0.0182},
            **{"recall_before": 0.75, "recall_after": 0.8, "recall_delta": 0.05},
            **{"support_before": 4, "support_after": 5},
        },
        {
            "label": "kiwi",
            **{"f1_before": 0.6667, "f1_after": None, "f1_delta": None},
            **{"recall_before": 1.0, "recall_after": None, "recall_delta": None},
            **{"support_before": 1, "support_after": None},
        },
        {
            "label": "mango",
            **{"f1_before": None, "f1_after": 0.6667, "f1_delta": None},
            **{"recall_before": None, "recall_after": 0.5, "recall_delta": None},
            **{"support_before": None, "support_after": 2},
        },
    ]


def test_paired_significance_uses_shared_images_with_the_same_label_only() -> None:
    before = predictions(
        [
            ("x1", "apple", "apple"),  # both right
            ("x2", "apple", "apple"),  # only A right
            ("x3", "pear", "kiwi"),  # only B right
            ("x4", "pear", "apple"),  # only B right
            ("x5", "kiwi", "pear"),  # both wrong
            ("r1", "pear", "pear"),  # relabelled in B: left out, though A is right
            ("a-only", "apple", "apple"),
        ]
    )
    after = predictions(
        [
            ("x5", "kiwi", "apple"),
            ("x4", "pear", "pear"),
            ("x3", "pear", "pear"),
            ("x2", "apple", "pear"),
            ("x1", "apple", "apple"),
            ("r1", "apple", "pear"),
            ("b-only-1", "mango", "mango"),
            ("b-only-2", "mango", "mango"),
        ]
    )

    result = paired_significance(before, after, resamples=500, confidence_level=0.9, seed=4)

    assert result["images"] == 5
    assert (result["both_right"], result["only_a_right"]) == (1, 1)
    assert (result["only_b_right"], result["both_wrong"]) == (2, 1)
    assert (result["top1_a"], result["top1_b"]) == (pytest.approx(0.4), pytest.approx(0.6))
    assert result["difference"] == pytest.approx(0.2)
    assert result["mcnemar_p"] == 1.0
    assert result["test_images"] == [7, 8]
    assert result["relabelled_left_out"] == 1
    assert (result["resamples"], result["confidence_level"]) == (500, 0.9)
    assert result["interval_low"] <= result["difference"] <= result["interval_high"]


def test_paired_significance_without_shared_images_has_nothing_to_compare() -> None:
    result = paired_significance(
        predictions([("x1", "apple", "apple")]),
        predictions([("y1", "apple", "apple")]),
        resamples=100,
        confidence_level=0.95,
        seed=0,
    )

    assert (result["images"], result["difference"], result["mcnemar_p"]) == (0, None, 1.0)
    assert (result["test_images"], result["relabelled_left_out"]) == ([1, 1], 0)


def test_code_changes_between_equal_commits_lists_no_files(
    repo: tuple[Path, str, str],
) -> None:
    root, _, second = repo

    changes = code_changes(code(second), code(second), root)

    assert changes == {
        "commits": [second, second],
        "dirty": [False, False],
        "files_between_commits": [],
        "uncommitted_files": [[], []],
    }


def test_code_changes_lists_each_file_changed_between_two_commits(
    repo: tuple[Path, str, str],
) -> None:
    root, first, second = repo

    changes = code_changes(code(first), code(second), root)

    assert changes["commits"] == [first, second]
    assert changes["files_between_commits"] == [
        {"status": "D", "path": "README.md"},
        {"status": "A", "path": "new.py"},
        {"status": "M", "path": "train.py"},
    ]


def test_code_changes_cannot_tell_for_a_commit_git_does_not_hold(
    repo: tuple[Path, str, str],
) -> None:
    root, first, _ = repo
    unknown = "0123456789" * 4

    assert code_changes(code(first), code(unknown), root)["files_between_commits"] is None
    assert code_changes(code(""), code(first), root)["files_between_commits"] is None


def test_code_changes_cannot_tell_when_neither_version_has_a_commit(
    repo: tuple[Path, str, str],
) -> None:
    root, _, _ = repo

    assert code_changes(code(""), code(""), root)["files_between_commits"] is None


def test_code_changes_names_the_files_each_recorded_diff_touched(
    repo: tuple[Path, str, str],
) -> None:
    root, _, second = repo
    (root / "train.py").write_text("epochs = 3\n")
    (root / "scratch.py").write_text("x = 1\n")
    recorded = git_diff(root)

    changes = code_changes(code(second), code(second, recorded), root)

    assert changes["dirty"] == [False, True]
    assert changes["uncommitted_files"] == [[], ["train.py", "scratch.py"]]


def test_code_changes_names_a_dirty_file_whose_path_holds_a_space(
    repo: tuple[Path, str, str],
) -> None:
    root, _, second = repo
    (root / "data b").mkdir()
    (root / "data b" / "c.py").write_text("y = 2\n")
    git(root, "add", "data b/c.py")
    recorded = git_diff(root)

    changes = code_changes(code(second), code(second, recorded), root)

    assert changes["uncommitted_files"] == [[], ["data b/c.py"]]


def test_code_changes_names_a_dirty_file_with_a_non_ascii_name(
    repo: tuple[Path, str, str],
) -> None:
    root, _, second = repo
    git(root, "config", "core.quotePath", "true")  # git's default, whatever the user's config
    (root / "café.py").write_text("z = 3\n")
    git(root, "add", "café.py")
    recorded = git_diff(root)

    changes = code_changes(code(second), code(second, recorded), root)

    assert changes["uncommitted_files"] == [[], ["café.py"]]
