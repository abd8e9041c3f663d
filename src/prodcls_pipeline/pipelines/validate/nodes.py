"""Validate: the manifest's data contract (report, always written) and the retraining gate."""

from typing import Any

import pandas as pd

from prodcls_pipeline.framework.params import ValidateParams
from prodcls_pipeline.validation.checks import (
    ValidationRules,
    raise_if_failed,
    select_validated,
    validate_manifest,
)
from prodcls_pipeline.validation.report import render_markdown


def check_manifest(
    manifest: pd.DataFrame, previous_validated_manifest: pd.DataFrame, params: ValidateParams
) -> tuple[dict[str, Any], str]:
    report = validate_manifest(
        manifest, previous_validated_manifest, ValidationRules.from_params(params.model_dump())
    )
    return report, render_markdown(report)


def gate_manifest(validation_report: dict[str, Any], manifest: pd.DataFrame) -> pd.DataFrame:
    raise_if_failed(validation_report)
    return select_validated(manifest)
