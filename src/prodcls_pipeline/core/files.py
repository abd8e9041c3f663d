"""Files written whole or not at all: a run killed mid-write leaves the previous file (or none),
never a truncated one that a later stage or run would trust."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write, renamed onto `path` when the block
    ends without an error and removed when it does not (the rename is atomic on one file
    system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary stream to a temporary file beside `path`, renamed onto `path` as `atomic_path`
    does."""
    with atomic_path(path) as temporary, temporary.open("wb") as stream:
        yield stream


def atomic_write(path: Path, data: bytes) -> None:
    """`data` as the whole content of `path`, written through `atomic_file`."""
    with atomic_file(path) as stream:
        stream.write(data)
