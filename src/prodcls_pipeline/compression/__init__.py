"""Compression of a trained classifier: int8 quantisation, pruning, batch-norm matching, and the
side-by-side comparison with the rule that picks the variant to deploy.

- `batch_norm`: Batch-norm statistics after pruning, matched to what the unpruned model's layers
  saw.
- `int8`: Static int8 quantisation of an exported classifier with ONNX Runtime, its head left in
  float.
- `pruning`: Magnitude pruning of a trained classifier, on copies: the model passed in is never
  changed.
- `variants`: The compressed variants side by side: which images calibrate and benchmark, the report
  that compares them on the test split, and the rule that picks the one to deploy.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "batch_norm": ["match_batch_norm", "record_input_statistics"],
        "int8": ["quantize_int8"],
        "pruning": ["prune_channels", "prune_unstructured", "zero_keeper"],
        "variants": ["DeployRule", "REFERENCE_VARIANT", "compare_variants", "render_report"],
    },
)
