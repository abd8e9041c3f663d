"""The Kedro glue: the params.yaml config loader, the project hooks, the typed params sections.
It imports only the core.

- `config_loader`: Kedro reads its parameters from the project's params.yaml, the file DVC tracks.
- `datasets`: Kedro datasets that stock kedro-datasets lack: folder handles, bytes, checkpoints.
- `hooks`: Project hooks: check params.yaml before anything runs; refuse a run beside another on
  the same data; point a failed validation gate at the report a person should read; end a failed
  run with that message, the traceback in a log file.
- `params`: The typed sections of params.yaml, checked once at start-up and again by Kedro per node.
- `run_lock`: One run at a time over a project's data, with DVC's own locks.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "config_loader": ["ParamsFileConfigLoader"],
        "hooks": ["ParamsCheckHook", "RunLockHook", "ShortFailureHook", "ValidationReportHook"],
        "run_lock": ["ProjectBusyError", "hold_project_data"],
        "params": [
            "AugmentParams",
            "CompressParams",
            "EvaluateParams",
            "IngestParams",
            "PackageParams",
            "ProjectParams",
            "SplitParams",
            "TrainParams",
            "ValidateParams",
            "check_params",
            "plain_params",
        ],
    },
)
