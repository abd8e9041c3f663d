"""Which drop folders are new, and when a new one is complete enough to land.

A drop is copied in by someone else (scp, rsync, a file share), so the watcher cannot know when
the copy ends. It trusts two signals: a `_READY` marker file the sender writes last, or a
listing (relative names, sizes, mtimes) that has stayed the same for a quiet period.
"""

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from prodcls_pipeline.data.drops import READY_MARKER
from prodcls_pipeline.data.layout import DROP_ID_PATTERN
from prodcls_pipeline.data.versioning import DVC_FILE_SUFFIX, dvc_file_path

DEFAULT_QUIET_PERIOD_S = 30.0
DEFAULT_POLL_S = 2.0

# One entry of a drop's listing: (relative path, size in bytes, mtime in ns). Folders are listed
# too (size 0), so an empty label folder that appears counts as a change.
Entry = tuple[str, int, int]
Listing = tuple[Entry, ...]


class DropState(Enum):
    """Where a new drop stands: first seen, still changing, settling, or complete."""

    SEEN = "seen"
    CHANGING = "changing"
    SETTLING = "settling"
    COMPLETE = "complete"


def is_drop_id(name: str) -> bool:
    """A folder name that `prodcls land` would accept as a drop id (so never hidden)."""
    return bool(DROP_ID_PATTERN.fullmatch(name)) and not name.endswith(DVC_FILE_SUFFIX)


def new_drops(drops_dir: Path) -> list[Path]:
    """Drop folders directly under `drops_dir` that have no `<id>.dvc` yet, by drop id."""
    return sorted(
        entry
        for entry in drops_dir.iterdir()
        if entry.is_dir()
        and not entry.is_symlink()
        and is_drop_id(entry.name)
        and not dvc_file_path(entry).exists()
    )


def strange_folders(drops_dir: Path) -> list[Path]:
    """Visible folders whose name is no drop id: the watcher never lands them."""
    return sorted(
        entry
        for entry in drops_dir.iterdir()
        if entry.is_dir() and not entry.name.startswith(".") and not is_drop_id(entry.name)
    )


def drop_listing(drop_dir: Path) -> Listing:
    """Every file and folder below `drop_dir`, hidden ones too (an rsync temp file means the
    copy is still running), with size and mtime; sorted, so two listings compare equal."""
    entries: list[Entry] = []
    for folder, folders, files in os.walk(drop_dir):
        for name in [*folders, *files]:
            path = Path(folder, name)
            try:
                status = path.lstat()
            except FileNotFoundError:
                # Removed between the walk and the stat: the next listing differs anyway.
                continue
            size = 0 if name in folders else status.st_size
            entries.append((path.relative_to(drop_dir).as_posix(), size, status.st_mtime_ns))
    return tuple(sorted(entries))


def has_ready_marker(listing: Listing) -> bool:
    return any(name == READY_MARKER for name, _, _ in listing)


@dataclass
class _Observed:
    listing: Listing
    unchanged_since: float


class SettleTracker:
    """Remembers each new drop's last listing and since when it has not changed.

    Time is passed in (`now`, monotonic seconds), so the rules can be tested without waiting.
    """

    def __init__(self, quiet_period_s: float) -> None:
        self.quiet_period_s = quiet_period_s
        self._observed: dict[str, _Observed] = {}

    def observe(self, drop: str, listing: Listing, now: float) -> DropState:
        """Record this listing of `drop` and say where the drop stands now."""
        previous = self._observed.get(drop)
        if previous is None or previous.listing != listing:
            self._observed[drop] = _Observed(listing, now)
        quiet_for = now - self._observed[drop].unchanged_since
        # An empty folder is a copy that has not started: it never settles on its own.
        if has_ready_marker(listing) or (listing and quiet_for >= self.quiet_period_s):
            return DropState.COMPLETE
        if previous is None:
            return DropState.SEEN
        if previous.listing != listing:
            return DropState.CHANGING
        return DropState.SETTLING

    def forget(self, drop: str) -> None:
        self._observed.pop(drop, None)

    def keep_only(self, drops: set[str]) -> None:
        """Forget drops that vanished or were landed by someone else."""
        for drop in set(self._observed) - drops:
            del self._observed[drop]
