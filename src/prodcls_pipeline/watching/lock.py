"""One run at a time per DVC repository: an advisory `flock` on a file under `.dvc/tmp/`.

Every `prodcls watch` (a daemon, or a `--once` from cron) takes it around land + repro + commit,
so two watchers never run two `dvc repro`s together, nor land a drop while the other's repro
hashes the drops folder. The kernel drops the lock when its holder dies, so it never goes stale.
"""

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from prodcls_pipeline.data.versioning import DVC_DIR

LOCK_FILE = "prodcls-watch.lock"
_DVC_TMP = "tmp"


def lock_path(repo_root: Path) -> Path:
    return repo_root / DVC_DIR / _DVC_TMP / LOCK_FILE


class RunLock:
    """The repository's run lock; `acquire` returns False when another process holds it."""

    def __init__(self, repo_root: Path) -> None:
        self.path = lock_path(repo_root)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without blocking (a blocked flock would not see a stop request)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # The holder's pid, so a waiting watcher can say whom it waits for.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid the lock file names (best effort: it is only a hint for the message)."""
        try:
            return self.path.read_text(encoding="utf-8").strip() or "unknown"
        except OSError:
            return "unknown"

    def wait(self, should_stop: Callable[[], bool], pause: Callable[[], None]) -> bool:
        """Take the lock, retrying after each `pause`; False when asked to stop first."""
        while not self.acquire():
            if should_stop():
                return False
            pause()
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
