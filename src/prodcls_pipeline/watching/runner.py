"""`dvc repro` as a child process: its output streamed, a stop request passed on, and the
outcome told apart (trained, rejected at a gate, failed, interrupted); then the git commit."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from prodcls_pipeline.data.versioning import dvc_file_path

TRAINED = "trained"
REJECTED = "rejected at a gate"
FAILED = "failed"
INTERRUPTED = "interrupted"
OUTCOMES = (TRAINED, REJECTED, FAILED, INTERRUPTED)

VALIDATE_GATE = "validate"
PROMOTION_GATE = "promotion"
# A gate raises a GateError subclass (core.errors); Kedro prints its class name when it stops.
_GATE_ERROR = re.compile(r"\b\w*GateError\b")
# The package stage's decision record (conf/base/catalog.yml `promotion`), written every run.
PROMOTION_RECORD = Path("data/08_reporting/promotion.json")
PROMOTION_REJECTED = "rejected"
# What git commits after a run, besides the drop's .dvc file and the .gitignore beside it.
COMMITTED_PATHS = (Path("dvc.lock"), Path("data/08_reporting"))
GITIGNORE = ".gitignore"
TAIL_LINES = 20
# Signals sent to the repro's process group for the first, second and later stop requests:
# DVC and Kedro stop cleanly on SIGINT; the next ones are for a run that does not listen.
_ESCALATION = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


@dataclass(frozen=True)
class ReproResult:
    status: int
    tail: list[str]
    gate_error: bool
    interrupted: bool


class Repro:
    """One `dvc repro` in `repo_root`, in its own process group so a stop reaches all of it."""

    def __init__(self, repo_root: Path) -> None:
        self.repo_root = repo_root
        self._process: subprocess.Popen[str] | None = None
        self._stops = 0

    def run(self, on_line: Callable[[str], None], output: TextIO) -> ReproResult:
        """Run to the end, each output line to `on_line` and to `output`."""
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        gate_error = False
        # Unbuffered Python children (Kedro), so lines arrive as they happen, not at exit.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro"],
            cwd=self.repo_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            # Its own group: a terminal's Ctrl-C reaches the watcher only, which passes one
            # SIGINT on to DVC and the stage it runs (DVC itself ignores SIGINT during a stage).
            process_group=0,
        )
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.rstrip("\n")
            on_line(line)
            output.write(line + "\n")
            tail.append(line)
            gate_error = gate_error or bool(_GATE_ERROR.search(line))
        status = self._process.wait()
        self._process = None
        return ReproResult(status, list(tail), gate_error, interrupted=self._stops > 0)

    def stop(self) -> None:
        """Pass a stop request on to the running repro (called from a signal handler)."""
        process = self._process
        if process is None:
            return
        signum = _ESCALATION[min(self._stops, len(_ESCALATION) - 1)]
        self._stops += 1
        # The group may have just exited on its own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def outcome_of(result: ReproResult, promotion: dict[str, Any] | None) -> tuple[str, str]:
    """(outcome, gate) of a finished repro; gate is "" unless a gate decided."""
    if result.status == 0:
        if promotion and promotion.get("verdict") == PROMOTION_REJECTED:
            return REJECTED, PROMOTION_GATE
        return TRAINED, ""
    if result.interrupted:
        return INTERRUPTED, ""
    if result.gate_error:
        return REJECTED, VALIDATE_GATE
    return FAILED, ""


def promotion_written_since(repo_root: Path, started: float) -> dict[str, Any] | None:
    """The promotion record, if this run wrote it (an older one is another run's verdict)."""
    path = repo_root / PROMOTION_RECORD
    try:
        if path.stat().st_mtime < started:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class GitError(RuntimeError):
    """A git command that failed; the message carries git's last line."""


def commit_run(repo_root: Path, drop_dir: Path, message: str) -> str:
    """`git add` the drop's .dvc file, the .gitignore DVC keeps beside it, dvc.lock and the
    reports, then commit only those paths; returns the new commit's short hash."""
    candidates = [
        dvc_file_path(drop_dir),
        drop_dir.parent / GITIGNORE,
        *(repo_root / path for path in COMMITTED_PATHS),
    ]
    paths = [str(path.relative_to(repo_root)) for path in candidates if path.exists()]
    _git(repo_root, "add", "--", *paths)
    # Paths named: whatever else someone staged in this working tree stays out of this commit.
    _git(repo_root, "commit", "--quiet", "-m", message, "--", *paths)
    return _git(repo_root, "rev-parse", "--short", "HEAD").strip()


def git_work_tree(repo_root: Path) -> bool:
    try:
        _git(repo_root, "rev-parse", "--is-inside-work-tree")
    except (GitError, FileNotFoundError):
        return False
    return True


def _git(repo_root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=repo_root, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise GitError(f"git {args[0]} failed: {' '.join(last)}")
    return result.stdout
