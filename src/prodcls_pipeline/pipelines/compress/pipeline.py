"""Compress stage: ONNX fp32 export, int8 static quantisation, and their comparison."""

from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.compress.nodes import compare, export_fp32, quantize


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(export_fp32, inputs="classifier", outputs="onnx_fp32", name="export_fp32"),
            node(
                quantize,
                inputs=[
                    "onnx_fp32",
                    "classifier",
                    "splits",
                    "image_store",
                    "params:compress",
                    "params:seed",
                ],
                outputs="onnx_int8",
                name="quantize_int8",
            ),
            node(
                compare,
                inputs=[
                    "onnx_fp32",
                    "onnx_int8",
                    "classifier",
                    "splits",
                    "image_store",
                    "params:compress",
                    "params:seed",
                ],
                outputs="compression_report",
                name="compare_variants",
            ),
        ]
    )
