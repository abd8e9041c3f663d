"""The run lock, the outcome of a repro and the JSON-lines log, without running DVC."""

import json
import os
import time
from pathlib import Path

import pytest

from prodcls_pipeline.watching.journal import RunRecord, append_record, read_records
from prodcls_pipeline.watching.lock import RunLock, lock_path
from prodcls_pipeline.watching.runner import (
    FAILED,
    INTERRUPTED,
    PROMOTION_GATE,
    PROMOTION_RECORD,
    REJECTED,
    TRAINED,
    VALIDATE_GATE,
    ReproResult,
    outcome_of,
    promotion_written_since,
)


def test_the_lock_is_held_by_one_holder_at_a_time(tmp_path: Path) -> None:
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    assert first.acquire()
    assert first.path == lock_path(tmp_path) and first.path.is_file()
    assert not second.acquire()
    assert second.holder() == str(os.getpid())
    # A waiter asked to stop gives up instead of blocking.
    assert not second.wait(should_stop=lambda: True, pause=lambda: None)
    first.release()
    with second:
        assert second.wait(should_stop=lambda: True, pause=lambda: None)
        assert not first.acquire()
    assert first.acquire()
    first.release()


def _result(status: int, gate_error: bool = False, interrupted: bool = False) -> ReproResult:
    return ReproResult(status, tail=[], gate_error=gate_error, interrupted=interrupted)


@pytest.mark.parametrize(
    ("result", "promotion", "expected"),
    [
        (_result(0), None, (TRAINED, "")),
        (_result(0), {"verdict": "promoted"}, (TRAINED, "")),
        (_result(0), {"verdict": "rejected"}, (REJECTED, PROMOTION_GATE)),
        (_result(1, gate_error=True), None, (REJECTED, VALIDATE_GATE)),
        (_result(1), None, (FAILED, "")),
        (_result(-2, interrupted=True), None, (INTERRUPTED, "")),
        (_result(0, interrupted=True), None, (TRAINED, "")),
    ],
)
def test_the_outcome_of_a_run(result, promotion, expected) -> None:
    assert outcome_of(result, promotion) == expected


def test_only_a_promotion_record_written_by_this_run_counts(tmp_path: Path) -> None:
    record = tmp_path / PROMOTION_RECORD
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"verdict": "rejected"}))
    assert promotion_written_since(tmp_path, started=time.time() - 60) == {"verdict": "rejected"}
    assert promotion_written_since(tmp_path, started=time.time() + 60) is None
    assert promotion_written_since(tmp_path / "elsewhere", started=0) is None


def test_the_journal_is_one_json_object_per_line(tmp_path: Path) -> None:
    append_record(tmp_path, RunRecord(drop="a", started="t0", outcome=TRAINED, repro_status=0))
    append_record(tmp_path, RunRecord(drop="b", started="t1", outcome=FAILED, tail=["boom"]))
    records = read_records(tmp_path)
    assert [(r["drop"], r["outcome"], r["tail"]) for r in records] == [
        ("a", TRAINED, []),
        ("b", FAILED, ["boom"]),
    ]
