"""Project hooks: check params.yaml before anything runs; point a failed validation gate at the
report a person should read."""

import logging
from typing import Any

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl

from prodcls_pipeline.core.errors import GateError
from prodcls_pipeline.framework.params import check_params

# Catalog names of the validation reports, and how to introduce each one to the reader.
REPORT_DATASETS = {
    "validation_report_markdown": "Validation report",
    "validation_report": "Validation report (JSON)",
}

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
