"""Auditing model versions: which data, code and params made each one, how two differ, and
whether one can be made again from its record alone.

- `comparison`: What differs between two model versions: drops, images per class, labels,
  params, code, metrics, significance, gates.
- `errors`: What stops an audit, each with a message that says what to do.
- `documents`: An audit report as a plain document and its renderings: rich, Markdown, HTML.
- `reports`: The four audit reports (list, show, diff, reproduce).
- `reproduction`: Re-make a model version from its lineage record alone, away from the working
  tree.
- `significance`: Exact McNemar and a paired bootstrap for the top-1 difference of two models.
- `versions`: The registered model versions as an auditor reads them, from the MLflow store.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "comparison": ["compare_versions"],
        "documents": ["FORMATS", "Report", "print_rich", "render"],
        "reports": [
            "diff_report",
            "list_report",
            "reproduce_report",
            "show_data",
            "show_report",
            "version_row",
        ],
        "errors": ["AuditError", "NoLineageError", "ReproductionError", "VersionNotFoundError"],
        "reproduction": ["DEFAULT_TARGET", "reproduce_version"],
        "significance": ["compare_paired", "mcnemar_exact_p"],
        "versions": ["AuditedVersion", "VersionStore"],
    },
)
