"""When a new drop counts as complete: which folders are new drops, what their listing holds,
and the settle rules (marker, quiet period, empty folder), on a clock the test controls."""

import os
from pathlib import Path

import pytest

from prodcls_pipeline.data.drops import READY_MARKER
from prodcls_pipeline.watching.listing import (
    DropState,
    SettleTracker,
    drop_listing,
    is_drop_id,
    new_drops,
    strange_folders,
)

QUIET = 30.0


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("week-48", True),
        ("drop_001.v2", True),
        (".week-48.partial", False),
        (".hidden", False),
        ("_READY", False),
        ("bad name", False),
        ("x.dvc", False),
    ],
)
def test_a_drop_id_is_what_land_accepts(name: str, valid: bool) -> None:
    assert is_drop_id(name) is valid


def test_new_drops_are_visible_valid_folders_without_a_dvc_file(tmp_path: Path) -> None:
    for name in ["b-new", "a-new", "landed", ".c.partial", ".hidden", "bad name"]:
        (tmp_path / name).mkdir()
    (tmp_path / "landed.dvc").write_text("outs: []\n")
    (tmp_path / "stray.jpg").write_bytes(b"not a folder")
    (tmp_path / "link").symlink_to(tmp_path / "a-new")

    assert [drop.name for drop in new_drops(tmp_path)] == ["a-new", "b-new"]
    assert [folder.name for folder in strange_folders(tmp_path)] == ["bad name"]


def test_the_listing_changes_with_each_new_file_size_or_mtime(tmp_path: Path) -> None:
    (tmp_path / "Lime").mkdir()
    (tmp_path / "Lime" / "a.jpg").write_bytes(b"12345")
    first = drop_listing(tmp_path)
    assert [(name, size) for name, size, _ in first] == [("Lime", 0), ("Lime/a.jpg", 5)]
    assert drop_listing(tmp_path) == first

    (tmp_path / "Lime" / "a.jpg").write_bytes(b"123456")
    grown = drop_listing(tmp_path)
    assert grown != first

    os.utime(tmp_path / "Lime" / "a.jpg", ns=(1, 1))
    assert drop_listing(tmp_path) != grown


def test_hidden_files_count_as_the_copy_still_running(tmp_path: Path) -> None:
    (tmp_path / "Lime").mkdir()
    before = drop_listing(tmp_path)
    (tmp_path / "Lime" / ".a.jpg.Xy12ab").write_bytes(b"rsync temp file")
    assert drop_listing(tmp_path) != before


def test_a_drop_is_complete_only_after_a_quiet_period_without_changes() -> None:
    tracker = SettleTracker(QUIET)
    one = (("Lime/a.jpg", 5, 1),)
    two = (*one, ("Lime/b.jpg", 5, 2))

    assert tracker.observe("d", one, now=0) == DropState.SEEN
    assert tracker.observe("d", one, now=QUIET - 1) == DropState.SETTLING
    # A new file just before the end of the quiet period starts it again.
    assert tracker.observe("d", two, now=QUIET - 0.5) == DropState.CHANGING
    assert tracker.observe("d", two, now=QUIET + 1) == DropState.SETTLING
    assert tracker.observe("d", two, now=2 * QUIET - 0.5) == DropState.COMPLETE


def test_a_ready_marker_completes_a_drop_at_once() -> None:
    tracker = SettleTracker(QUIET)
    assert tracker.observe("d", (("Lime/a.jpg", 5, 1),), now=0) == DropState.SEEN
    marked = (("Lime/a.jpg", 5, 1), (READY_MARKER, 0, 2))
    assert tracker.observe("d", marked, now=1) == DropState.COMPLETE
    assert SettleTracker(QUIET).observe("e", marked, now=0) == DropState.COMPLETE


def test_an_empty_folder_never_settles() -> None:
    tracker = SettleTracker(QUIET)
    tracker.observe("d", (), now=0)
    assert tracker.observe("d", (), now=10 * QUIET) == DropState.SETTLING


def test_without_a_quiet_period_a_drop_is_complete_when_first_seen() -> None:
    assert SettleTracker(0).observe("d", (("a/b.jpg", 1, 1),), now=0) == DropState.COMPLETE


def test_forgotten_drops_start_again() -> None:
    tracker = SettleTracker(QUIET)
    listing = (("a/b.jpg", 1, 1),)
    tracker.observe("d", listing, now=0)
    tracker.observe("e", listing, now=0)
    tracker.keep_only({"e"})
    assert tracker.observe("d", listing, now=QUIET) == DropState.SEEN
    assert tracker.observe("e", listing, now=QUIET) == DropState.COMPLETE
