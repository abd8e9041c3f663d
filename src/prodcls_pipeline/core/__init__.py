"""The shared core: definitions every area uses and that depend on no area.

- `errors`: GateError, the refusal every gate raises;
- `schema`: the manifest's columns and types, the split names, the image statuses;
- `scores` and `numbers`: top-1, macro-F1 and the decimals reported numbers keep;
- `tables`: the Markdown table writer that escapes every cell;
- `rules`: the base of every rule built from a params section;
- `tracking`: the MLflow tracking URI.

Only `GateError` is imported here: the Kedro glue needs it, and the other modules pull in
sklearn or mlflow, which importing the core must not.
"""

from prodcls_pipeline.core.errors import GateError

__all__ = ["GateError"]
