"""Files written whole or not at all: a run killed mid-write leaves the previous file (or none),
never a truncated one that a later stage or run would trust."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary stream to a temporary file beside `path`, renamed onto `path` when the block
    ends without an error and removed when it does not (the rename is atomic on one file
    system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """`data` as the whole content of `path`, written through `atomic_file`."""
    with atomic_file(path) as stream:
        stream.write(data)
