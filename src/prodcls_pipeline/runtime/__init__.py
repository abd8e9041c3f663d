"""Running exported models: ONNX Runtime sessions, image batches, timing.

- `batching`: Stored images as normalised batches, with their class indices, and top-1 of sessions
  on them.
- `sessions`: ONNX Runtime CPU sessions with the project's settings, and a torch module run through
  one.
- `timing`: CPU throughput and latency of an ONNX Runtime session.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "batching": [
            "ImageSource",
            "class_indices",
            "image_batches",
            "labelled_batches",
            "predict_top1",
        ],
        "sessions": ["available_cores", "create_session", "onnx_encoder", "session_options"],
        "timing": ["measure"],
    },
)
