"""A failed run ends with the lines a person needs; the traceback goes to the log file."""

import subprocess
import sys
from pathlib import Path

_RUN = """
import sys
from prodcls_pipeline.core.errors import GateError
from prodcls_pipeline.framework.hooks import ShortFailureHook

try:
    raise {error}
except Exception as failure:  # what Kedro does: hooks see the error, then it propagates
    error = failure
    error.add_note("Validation report: data/08_reporting/validation_report.md")
    ShortFailureHook().on_pipeline_error(error, {{"pipeline_names": ["validate"]}})
raise {raised}
"""


def run_failing(tmp_path: Path, error: str, raised: str = "error") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _RUN.format(error=error, raised=raised)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=120,
    )


def test_a_gate_failure_prints_its_message_and_report_and_logs_the_traceback(tmp_path):
    result = run_failing(tmp_path, 'GateError("Manifest validation failed; retraining stops")')

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Stage 'validate' failed: Manifest validation failed; retraining stops",
        "Validation report: data/08_reporting/validation_report.md",
        "Traceback: logs/stages/validate.log",
    ]
    logged = (tmp_path / "logs" / "stages" / "validate.log").read_text()
    assert logged.startswith("Traceback (most recent call last):")
    assert "GateError: Manifest validation failed" in logged


def test_an_unexpected_error_is_named_by_its_type(tmp_path):
    result = run_failing(tmp_path, 'KeyError("image_store")')

    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "Stage 'validate' failed: KeyError: 'image_store'"
    assert "Traceback (most recent" not in result.stderr


def test_another_uncaught_exception_keeps_its_traceback(tmp_path):
    result = run_failing(tmp_path, 'GateError("gate")', raised='RuntimeError("elsewhere")')

    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: elsewhere" in result.stderr
