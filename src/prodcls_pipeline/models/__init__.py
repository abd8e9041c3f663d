"""The networks: ImageNet backbones, the product classifier, backbone splitting, ONNX export.

- `backbone_split`: Splitting a timm EfficientNet/MobileNet at a block, for `partial` fine-tuning.
- `backbones`: ImageNet backbones and the preprocessing they expect.
- `classifier`: The deployable classifier: a pretrained backbone followed by a linear head.
- `onnx_export`: ONNX export of the classifier, and the weight count of an exported (or quantised)
  model.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "backbone_split": ["BackboneSuffix", "activation_key", "split_backbone"],
        "backbones": [
            "backbone_identity",
            "create_backbone",
            "preprocessing_for",
            "weights_digest",
        ],
        "classifier": [
            "ProductClassifier",
            "build_classifier",
            "checkpoint_preprocessing",
            "fold_temperature",
            "make_checkpoint",
        ],
        "onnx_export": ["INPUT_NAME", "export_onnx", "parameter_count"],
    },
)
