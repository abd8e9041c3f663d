"""Releasing a model: the package and model card, lineage, the MLflow registry, the promotion
gate.

- `lineage`: Which code, data, params and dependencies made a model: hashes an auditor can check by
  hand.
- `package`: The deployable model package: the ONNX model and everything needed to use and trust it.
- `promotion`: The promotion gate: a challenger replaces the champion only when it is measurably
  better.
- `registry`: A new MLflow model version for a model package, logged into the run that trained it,
  and the aliases that say which version is in service (`champion`) and which was registered last
  (`challenger`).

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "lineage": [
            "IMAGES_FILE",
            "PARAMS_FILE",
            "PREDICTIONS_FILE",
            "RECORD_FILE",
            "changed_files",
            "collect_lineage",
            "file_md5",
            "image_table",
            "lineage_record",
            "patched_files",
            "version_artifact_path",
        ],
        "package": ["LINEAGE_FILE", "build_package", "served_digest", "version_tags"],
        "promotion": [
            "PROMOTED",
            "REJECTED",
            "PromotionRule",
            "decide",
            "render_decision",
            "score",
        ],
        "registry": [
            "CHAMPION",
            "SERVED_DIGEST_TAG",
            "DatasetInput",
            "alias_version",
            "attach_decision",
            "decision_folder",
            "existing_registration",
            "log_lineage",
            "recorded_json",
            "register_model_version",
            "move_alias_from",
            "set_alias",
            "version_run_id",
        ],
    },
)
