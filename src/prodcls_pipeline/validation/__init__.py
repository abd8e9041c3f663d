"""The validation gate: the checks a drop must pass and the report a person reads.

- `checks`: The data contract of the manifest, checked with Great Expectations, as a JSON-ready
  report.
- `drift`: Drift of a new drop against the data already accepted (classes and images).
- `duplicates`: Near-duplicate images: pairs of different files whose embeddings nearly agree.
- `label_quality`: Suspected label errors: images whose given label a probe trained without them
  disbelieves.
- `quality`: The checks of what a drop's images look like and say, beyond the manifest's contract.
- `report`: The validation report as a Markdown page for people (GX Data Docs need CDNs: not
  offline).
- `review`: A reviewer's decisions on suspected label errors and near-duplicates, and applying
  them.
- `review_page`: The review page: each suspect and near-duplicate pair with its thumbnails.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "checks": ["ValidationRules", "raise_if_failed", "select_validated", "validate_manifest"],
        "drift": [
            "CHECK_NAMES",
            "IMAGE_MMD",
            "DriftCheck",
            "DriftSettings",
            "drift_checks",
            "image_flagged",
        ],
        "duplicates": ["DuplicateSettings", "label_conflicts", "near_duplicates", "split_leaks"],
        "label_quality": [
            "LabelQualitySettings",
            "capped_suspects",
            "drop_suspects",
            "find_suspects",
            "out_of_fold_probabilities",
            "suspect_share",
        ],
        "quality": [
            "QualityFindings",
            "QualitySettings",
            "quality_checks",
            "review_tables",
            "with_findings",
        ],
        "report": ["render_markdown"],
        "review": [
            "APPLIED_COLUMNS",
            "REVIEW_FILE",
            "ReviewOutcome",
            "apply_review",
            "parse_review_decisions",
            "review_section",
        ],
        "review_page": ["render_review_page", "thumbnail_jpeg"],
    },
)
