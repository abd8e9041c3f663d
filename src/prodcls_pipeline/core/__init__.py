"""The shared core: definitions every area uses and that depend on no area.

- `digests`: Content digests: of bytes, of a file streamed from disk, and of a folder of source
  files.
- `errors`: Errors every layer may raise and the Kedro glue recognises without importing the areas.
- `exports`: An area's public API, named in its `__init__.py` and imported on first use (PEP 562).
- `files`: Files written whole or not at all, so a killed run leaves no truncated file.
- `numbers`: How many decimals each kind of reported number keeps, so every stage rounds alike.
- `plotting`: Matplotlib as every plot uses it: rendered headless, every text drawn as typed.
- `rules`: Rules read from one section of params.yaml, built and checked one way.
- `schema`: The manifest's columns and types, the split names and the image statuses: the words
  every stage uses for the same rows, defined once.
- `scores`: Top-1 and macro-F1, computed one way for every stage that scores a model.
- `tables`: Markdown tables whose cells show their text literally, whatever a label or file name
  holds.
- `tracking`: Where MLflow keeps runs and the registry: sqlite under the project unless told
  otherwise.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "digests": ["package_digest", "sha256_bytes", "sha256_file"],
        "errors": ["GateError", "RefusedError"],
        "exports": ["lazy_exports"],
        "files": ["atomic_file", "atomic_path", "atomic_write"],
        "numbers": ["METRIC_DIGITS", "round_measure", "round_metric"],
        "plotting": ["configure_matplotlib"],
        "rules": ["Rule", "RuleParamsError"],
        "schema": [
            "INTEGER_COLUMNS",
            "MANIFEST_COLUMNS",
            "MANIFEST_DTYPES",
            "OK",
            "PINNED_SPLITS",
            "QUARANTINED",
            "REQUIRED_SPLITS",
            "SPLITS",
            "SPLIT_COLUMNS",
            "STATUSES",
            "TEST",
            "TRAIN",
            "UNPINNED",
            "VAL",
        ],
        "scores": ["classification_scores", "hit_rate", "top1"],
        "tables": ["Markdown", "bold", "code", "escape", "markdown_table"],
        "tracking": [
            "TRACKING_URI_ENV",
            "set_tracking",
            "sqlite_tracking_uri",
            "tracking_uri",
            "use_project_tracking",
        ],
    },
)
