"""Project hooks: check params.yaml before anything runs; refuse a run beside another on the same
data; point a failed validation gate at the report a person should read; end a failed run with
that message, the traceback in a log file."""

import contextlib
import logging
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl

from prodcls_pipeline.core.errors import GateError, RefusedError
from prodcls_pipeline.framework.params import check_params
from prodcls_pipeline.framework.run_lock import (
    ProjectBusyError,
    hold_project_data,
    runs_under_dvc,
)

# Catalog names of the validation reports, and how to introduce each one to the reader.
REPORT_DATASETS = {
    "validation_report_markdown": "Validation report",
    "validation_report": "Validation report (JSON)",
}

# Where a failed run's traceback goes, one file per pipeline (a DVC stage runs one).
TRACEBACK_DIR = Path("logs") / "stages"

logger = logging.getLogger(__name__)


class ParamsCheckHook:
    """Validates the whole of params.yaml once, when the context is created.

    Kedro validates only the sections that the nodes of the pipelines it runs annotate; a typo in
    a section that the run does not use, or an unknown section, would pass. This check fails every
    run, before any node, with one line per problem naming the key and its section.
    """

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        check_params(context.config_loader["parameters"])


class ValidationReportHook:
    """Adds the validation reports' file paths to a gate's error, so `dvc repro` ends with them.

    The gate node stays a pure function of its inputs; only the catalog knows where the reports
    are written, and this hook reads that from the catalog configuration.
    """

    def __init__(self) -> None:
        self._report_lines: list[str] = []

    @hook_impl
    def after_catalog_created(self, conf_catalog: dict[str, Any]) -> None:
        self._report_lines = [
            f"{title}: {conf_catalog[name]['filepath']}"
            for name, title in REPORT_DATASETS.items()
            if "filepath" in conf_catalog.get(name, {})
        ]

    @hook_impl
    def on_node_error(self, error: Exception) -> None:
        if not isinstance(error, GateError):
            return
        for line in self._report_lines:
            error.add_note(line)
        logger.error("%s", "\n".join([str(error), *self._report_lines]))


class ShortFailureHook:
    """Ends a failed `kedro run` with the lines a person needs instead of a traceback.

    Kedro lets the run's exception reach the interpreter, which prints some 40 lines of Python
    before the message. This hook writes the traceback to `logs/stages/<pipeline>.log` and, for
    that exception alone, has the interpreter print the stage, the problem, a gate's report paths
    and the log's path instead. An in-process caller (a test, a notebook) still gets the
    exception; any other uncaught exception keeps the interpreter's handling.
    """

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any]) -> None:
        end_with_message(stage_name(run_params), error)


class RunLockHook:
    """Refuses a `kedro run` while a `dvc repro` or another `kedro run` works on the project's
    data, and makes a `dvc repro` started during it wait its turn (see `framework.run_lock`).

    Kedro calls `before_pipeline_run` outside the run's error handling, so a refusal ends with
    its short message here; nothing has been read or written yet.
    """

    def __init__(self) -> None:
        self._held = contextlib.ExitStack()

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        if runs_under_dvc():
            return
        stage = stage_name(run_params)
        command = " ".join(["kedro run", *(f"--pipeline {name}" for name in stage.split("+"))])
        try:
            self._held.enter_context(hold_project_data(Path(run_params["project_path"]), command))
        except ProjectBusyError as error:
            end_with_message(stage, error)
            raise

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._held.close()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._held.close()


def stage_name(run_params: dict[str, Any]) -> str:
    """The pipelines a run runs (a DVC stage runs one), joined by "+"."""
    return "+".join(run_params.get("pipeline_names") or ["__default__"])


def end_with_message(stage: str, error: BaseException) -> None:
    """Log `error`'s traceback and have the interpreter print the short message instead of the
    traceback, should `error` end the process."""
    message = failure_message(stage, error, write_traceback(stage, error))
    previous = sys.excepthook

    def print_message(
        kind: type[BaseException], value: BaseException, trace: TracebackType | None
    ) -> None:
        if value is error:
            print(message, file=sys.stderr)
        else:
            previous(kind, value, trace)

    sys.excepthook = print_message


def failure_message(stage: str, error: BaseException, traceback_file: Path) -> str:
    """Which stage failed, what went wrong (a refusal's message and notes say why and name the
    report), and where the traceback is."""
    problem = str(error) if isinstance(error, RefusedError) else f"{type(error).__name__}: {error}"
    notes = getattr(error, "__notes__", [])
    return "\n".join([f"Stage {stage!r} failed: {problem}", *notes, f"Traceback: {traceback_file}"])


def write_traceback(stage: str, error: BaseException) -> Path:
    """`error`'s traceback in `TRACEBACK_DIR/<stage>.log`, replacing the last failure's."""
    TRACEBACK_DIR.mkdir(parents=True, exist_ok=True)
    path = TRACEBACK_DIR / f"{stage}.log"
    path.write_text("".join(traceback.format_exception(error)))
    return path
