"""Kedro project settings."""

from prodcls_pipeline.framework.config_loader import ParamsFileConfigLoader
from prodcls_pipeline.framework.hooks import (
    ParamsCheckHook,
    RunLockHook,
    ShortFailureHook,
    ValidationReportHook,
)

HOOKS = (ParamsCheckHook(), RunLockHook(), ValidationReportHook(), ShortFailureHook())

CONFIG_LOADER_CLASS = ParamsFileConfigLoader
CONFIG_LOADER_ARGS = {"base_env": "base", "default_run_env": "local"}
