"""Content digests: of bytes, of a file streamed from disk, and of a folder of source files."""

import hashlib
from pathlib import Path

# The prodcls_pipeline package: core/ is one of its folders.
_PACKAGE = Path(__file__).resolve().parents[1]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hash a file without holding it in memory (for files too large to decode)."""
    with Path(path).open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def source_digest(folder: Path, pattern: str = "*.py") -> str:
    """One digest of every file under `folder` matching `pattern`, names and contents: it changes
    when any of them is edited, added, removed or renamed, and not when bytecode is rebuilt."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob(pattern)):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def package_digest() -> str:
    """`source_digest` of the whole prodcls_pipeline package as installed."""
    return source_digest(_PACKAGE)
