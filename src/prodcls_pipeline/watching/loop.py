"""The watch loop: poll the drops folder, and for each drop that is complete, one at a time
under the repository's run lock: land it (`dvc add`), `dvc repro`, log, and maybe commit.

Raw data is never touched: a drop whose run fails stays where it is, landed, and the log says
that every later run will fail the same way until a person fixes the cause or removes it.
"""

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType

from prodcls_pipeline.data.drops import READY_MARKER
from prodcls_pipeline.data.versioning import DvcError, dvc_file_path, track_drops
from prodcls_pipeline.watching.journal import (
    RunRecord,
    append_record,
    iso,
    run_output_path,
    utc_now,
)
from prodcls_pipeline.watching.listing import (
    DropState,
    Listing,
    SettleTracker,
    drop_listing,
    new_drops,
    strange_folders,
)
from prodcls_pipeline.watching.lock import RunLock
from prodcls_pipeline.watching.runner import (
    FAILED,
    INTERRUPTED,
    GitError,
    Repro,
    commit_run,
    outcome_of,
    promotion_written_since,
)

# How often a wait (between polls, for the lock) checks for a stop request.
_TICK_S = 0.1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Say = Callable[[str], None]


@dataclass(frozen=True)
class WatchSettings:
    drops_dir: Path
    repo_root: Path
    quiet_period_s: float
    poll_s: float
    commit: bool = False
    once: bool = False


class Watcher:
    """Polls `settings.drops_dir`; `say` gets the one-line messages, `echo` the repro output."""

    def __init__(self, settings: WatchSettings, say: Say, echo: Say) -> None:
        self.settings = settings
        self._say = say
        self._echo = echo
        self._tracker = SettleTracker(settings.quiet_period_s)
        self._lock = RunLock(settings.repo_root)
        self._repro: Repro | None = None
        self._stop_signal: int | None = None
        # Drops whose landing failed, with the listing it failed on: retried once it changes.
        self._failed_landing: dict[str, Listing] = {}
        self._warned: set[str] = set()

    @property
    def stopping(self) -> bool:
        return self._stop_signal is not None

    @property
    def stop_signal(self) -> int | None:
        return self._stop_signal

    def request_stop(self, signum: int, frame: FrameType | None = None) -> None:
        """Signal handler: stop after the current step; pass the signal on to a running repro."""
        self._stop_signal = signum
        repro = self._repro
        if repro is not None:
            repro.stop()

    def run(self) -> None:
        """Watch until stopped (or, with `once`, until every drop complete now is handled)."""
        quiet = self.settings.quiet_period_s
        self._say(
            f"watching {self.settings.drops_dir}: a new drop is complete with a {READY_MARKER} "
            f"file or after {quiet:g} s without changes" + (" (once)" if self.settings.once else "")
        )
        deadline: float | None = None
        while not self.stopping:
            now = time.monotonic()
            # --once: a drop without a marker needs one quiet period of watching to count.
            deadline = now + quiet if deadline is None else deadline
            complete, pending = self._poll(now)
            if complete:
                self._handle(complete[0])
                continue
            if self.settings.once and (not pending or now >= deadline):
                return
            self._pause(self.settings.poll_s)

    def _poll(self, now: float) -> tuple[list[Path], list[Path]]:
        """(complete, not yet complete) new drops, by drop id; says what changed."""
        self._warn_strange_folders()
        drops = new_drops(self.settings.drops_dir)
        self._tracker.keep_only({drop.name for drop in drops})
        complete, pending = [], []
        for drop in drops:
            listing = drop_listing(drop)
            if self._failed_landing.get(drop.name) == listing:
                continue
            state = self._tracker.observe(drop.name, listing, now)
            if state == DropState.SEEN:
                self._say(f"{drop.name}: seen, waiting for it to settle")
            (complete if state == DropState.COMPLETE else pending).append(drop)
        return complete, pending

    def _warn_strange_folders(self) -> None:
        for folder in strange_folders(self.settings.drops_dir):
            if folder.name not in self._warned:
                self._warned.add(folder.name)
                self._say(f"{folder.name}: not a drop id, never landed (ingest still reads it)")

    def _handle(self, drop: Path) -> None:
        """Land + repro one complete drop under the run lock, and log what happened."""
        why = "marker" if (drop / READY_MARKER).exists() else "settled"
        self._say(f"{drop.name}: complete ({why})")
        self._tracker.forget(drop.name)
        if not self._lock.acquire():
            self._say(
                f"another prodcls watch (pid {self._lock.holder()}) is running a drop "
                f"({self._lock.path}): waiting for it"
            )
            if not self._lock.wait(lambda: self.stopping, lambda: self._pause(_TICK_S)):
                return
        try:
            # The other watcher may have landed this drop while this one waited.
            if dvc_file_path(drop).exists():
                self._say(f"{drop.name}: already landed by another watcher")
                return
            record = self._land_and_run(drop)
        finally:
            self._lock.release()
        append_record(self.settings.repo_root, record)
        self._say(_summary(record))

    def _land_and_run(self, drop: Path) -> RunRecord:
        started = utc_now()
        clock = time.monotonic()
        record = RunRecord(drop=drop.name, started=iso(started))
        try:
            [version] = track_drops([drop], self.settings.repo_root)
        except DvcError as error:
            self._failed_landing[drop.name] = drop_listing(drop)
            record.outcome, record.message = FAILED, f"landing failed: {error}; retried on change"
            return _finish(record, clock)
        self._failed_landing.pop(drop.name, None)
        record.dvc_hash = version.dvc_hash
        self._say(f"{drop.name}: landed as {dvc_file_path(drop).name} (md5 {version.dvc_hash})")
        if self.stopping:
            record.outcome = INTERRUPTED
            record.message = "landed; stopped before dvc repro: the next run includes it"
            return _finish(record, clock)
        self._repro_into(record, drop, started)
        return _finish(record, clock)

    def _repro_into(self, record: RunRecord, drop: Path, started: datetime) -> None:
        root = self.settings.repo_root
        output_path = run_output_path(root, drop.name, started)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        record.output_log = str(output_path.relative_to(root))
        self._say(f"{drop.name}: dvc repro (output also in {record.output_log})")
        self._repro = Repro(root)
        try:
            with output_path.open("w", encoding="utf-8", buffering=1) as output:
                result = self._repro.run(self._echo, output)
        finally:
            self._repro = None
        record.repro_status = result.status
        record.outcome, record.gate = outcome_of(
            result, promotion_written_since(root, started.timestamp())
        )
        if result.status != 0:
            record.tail = result.tail
            record.message = _failure_message(record, drop)
            return
        if self.settings.commit:
            self._commit_into(record, drop)

    def _commit_into(self, record: RunRecord, drop: Path) -> None:
        try:
            record.commit = commit_run(
                self.settings.repo_root, drop, f"prodcls watch: drop {drop.name}"
            )
        except GitError as error:
            record.message = f"not committed: {error}"

    def _pause(self, seconds: float) -> None:
        """Sleep in short ticks, so a stop request is seen at once (a signal does not end
        `time.sleep`, which resumes after the handler returns)."""
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            time.sleep(min(_TICK_S, left))


def _finish(record: RunRecord, clock: float) -> RunRecord:
    record.finished = iso(utc_now())
    record.seconds = round(time.monotonic() - clock, 3)
    return record


def _failure_message(record: RunRecord, drop: Path) -> str:
    if record.outcome == INTERRUPTED:
        return (
            f"stopped by a signal: {drop.name} is landed but not trained; "
            "the next run (or a person's dvc repro) takes it in"
        )
    return (
        f"{drop.name} stays landed in {drop.parent} (raw data is never moved or deleted): every "
        f"later run fails the same way until a person fixes the cause or removes the drop "
        f"(its folder and {dvc_file_path(drop).name}); output in {record.output_log}"
    )


def _summary(record: RunRecord) -> str:
    status = "" if record.repro_status is None else f", dvc repro exit {record.repro_status}"
    gate = f" ({record.gate} gate)" if record.gate else ""
    committed = f", committed {record.commit}" if record.commit else ""
    line = f"{record.drop}: {record.outcome}{gate} in {record.seconds:.1f} s{status}{committed}"
    return f"{line}; {record.message}" if record.message else line


@contextmanager
def stop_on_signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call `handler` (no KeyboardInterrupt) while the block runs."""
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
