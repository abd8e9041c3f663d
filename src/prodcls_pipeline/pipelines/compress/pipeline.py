"""Compress stage: ONNX export, int8 quantisation, pruning, distillation, and their comparison."""

from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.compress.nodes import (
    compare,
    distill,
    export_fp32,
    prune,
    quantize,
)

_IMAGES = ["classifier", "splits", "image_store"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(export_fp32, inputs="classifier", outputs="onnx_fp32", name="export_fp32"),
            node(
                quantize,
                inputs=["onnx_fp32", *_IMAGES, "params:compress", "params:seed"],
                outputs="onnx_int8",
                name="quantize_int8",
            ),
            node(
                prune,
                inputs=[*_IMAGES, "params:compress", "params:train", "params:seed"],
                outputs="pruned_variants",
                name="prune",
            ),
            node(
                distill,
                inputs=[*_IMAGES, "params:compress", "params:seed"],
                outputs="distilled_variants",
                name="distill",
            ),
            node(
                compare,
                inputs=[
                    "onnx_fp32",
                    "onnx_int8",
                    "pruned_variants",
                    "distilled_variants",
                    *_IMAGES,
                    "params:compress",
                    "params:seed",
                ],
                outputs=["onnx_models", "compression_report", "compression_report_markdown"],
                name="compare_variants",
            ),
        ]
    )
