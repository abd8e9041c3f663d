"""The watcher's log: one JSON line per drop it handled, and the full output of each run.

It lives in `<dvc root>/logs/`, which is neither a DVC dep nor an out (writing it never makes a
stage stale) and is git-ignored: it is the operator's history, not a data version.
"""

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG_DIR = Path("logs")
JOURNAL_FILE = LOG_DIR / "watch.jsonl"
RUN_OUTPUT_DIR = LOG_DIR / "watch"
_STAMP = "%Y%m%dT%H%M%SZ"


@dataclass
class RunRecord:
    """What happened to one drop: landing, the repro, its outcome and, with --commit, git."""

    drop: str
    started: str
    finished: str = ""
    seconds: float = 0.0
    dvc_hash: str = ""
    repro_status: int | None = None
    outcome: str = ""
    gate: str = ""
    message: str = ""
    output_log: str = ""
    tail: list[str] = field(default_factory=list)
    commit: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def run_output_path(repo_root: Path, drop: str, started: datetime) -> Path:
    """`logs/watch/<drop>-<UTC time>.log`: the whole repro output of one run."""
    return repo_root / RUN_OUTPUT_DIR / f"{drop}-{started.strftime(_STAMP)}.log"


def append_record(repo_root: Path, record: RunRecord) -> Path:
    """Append `record` as one JSON line (a line is written whole, so readers never see half)."""
    path = repo_root / JOURNAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    return path


def read_records(repo_root: Path) -> list[dict[str, Any]]:
    path = repo_root / JOURNAL_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
