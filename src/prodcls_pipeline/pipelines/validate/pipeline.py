"""Validate pipeline: manifest → report (JSON + Markdown) → gate → validated manifest.

The gate is its own node so that Kedro saves both reports before the gate can raise.
"""

from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.validate.nodes import check_manifest, gate_manifest


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                check_manifest,
                inputs=["manifest", "previous_validated_manifest", "params:validate"],
                outputs=["validation_report", "validation_report_markdown"],
                name="check_manifest",
            ),
            node(
                gate_manifest,
                inputs=["validation_report", "manifest"],
                outputs="validated_manifest",
                name="gate_manifest",
            ),
        ]
    )
