"""One run at a time over a project's data, with DVC's own locks.

`dvc repro` holds the repository lock (`.dvc/tmp/lock`) between stages and, while a stage's
command runs, read and write locks on that stage's deps and outs (`.dvc/tmp/rwlock`). A `kedro
run` started by hand takes the same locks: the repository lock while it claims a write lock on
the whole `data/` folder, and that write lock until it ends. So whichever starts second, a
`dvc repro` or another `kedro run`, is refused with DVC's message naming the process in the way,
before it removes or writes any output. A stage that `dvc repro` runs takes nothing: its `dvc`
already holds the locks for it. A lock held by a killed process is released by the kernel (the
repository lock) or dropped by DVC once its process is gone (the rwlock).
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from prodcls_pipeline.core.errors import RefusedError

# The environment variable DVC sets for a stage's command, naming the stage.
DVC_STAGE_ENV = "DVC_STAGE"
DATA_DIR = "data"


class ProjectBusyError(RefusedError):
    """Another `dvc repro` or `kedro run` is working on the project's data."""


def runs_under_dvc() -> bool:
    """Whether this process is the command of a stage that `dvc repro` runs."""
    return DVC_STAGE_ENV in os.environ


@contextlib.contextmanager
def hold_project_data(project_root: Path, command: str) -> Iterator[None]:
    """Hold DVC's write lock on `project_root/data` for `command` while the block runs; raises
    `ProjectBusyError` when another run holds the repository or any of the data. A project that
    is no DVC repository has nothing to lock."""
    tmp_dir = project_root / ".dvc" / "tmp"
    if not tmp_dir.parent.is_dir():
        yield
        return
    # Imported here: a stage run by `dvc repro` never pays for DVC's imports.
    from dvc.fs import localfs
    from dvc.lock import LockError, make_lock
    from dvc.rwlock import rwlock

    tmp_dir.mkdir(exist_ok=True)
    repository = make_lock(str(tmp_dir / "lock"), tmp_dir=str(tmp_dir), hardlink_lock=False)
    data = str((project_root / DATA_DIR).resolve())
    with contextlib.ExitStack() as held:
        try:
            with repository:
                held.enter_context(rwlock(str(tmp_dir), localfs, command, [], [data], False))
        except LockError as error:
            raise ProjectBusyError(
                "another `dvc repro` or `kedro run` is working in this project; wait for it to "
                f"end, then run again. DVC says: {error}"
            ) from error
        yield
