"""The validation gate: the checks a drop must pass and the report a person reads.

- `checks`: The data contract of the manifest, checked with Great Expectations, as a JSON-ready
  report.
- `drift`: Drift of a new drop against the data already accepted (classes and images).
- `report`: The validation report as a Markdown page for people (GX Data Docs need CDNs: not
  offline).

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "checks": ["ValidationRules", "raise_if_failed", "select_validated", "validate_manifest"],
        "drift": ["CHECK_NAMES", "IMAGE_MMD", "DriftSettings", "drift_checks"],
        "report": ["render_markdown"],
    },
)
