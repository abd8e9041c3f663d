"""Validate pipeline: review decisions → contract check → data-quality checks → report (JSON,
Markdown, review page) → gate → validated manifest.

The gate is its own node so that Kedro saves the reports and the review page before it can raise.
"""

from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.validate.nodes import (
    check_manifest,
    check_quality,
    gate_manifest,
    report_validation,
    review_manifest,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                review_manifest,
                inputs=["manifest", "review_decisions"],
                outputs=["reviewed_manifest", "review_outcome"],
                name="review_manifest",
            ),
            node(
                check_manifest,
                inputs=["reviewed_manifest", "previous_validated_manifest", "params:validate"],
                outputs="contract_report",
                name="check_manifest",
            ),
            node(
                check_quality,
                inputs=[
                    "contract_report",
                    "reviewed_manifest",
                    "previous_validated_manifest",
                    "review_outcome",
                    "image_store",
                    "validation_embeddings",
                    "params:validate",
                    "params:split",
                    "params:train",
                    "params:seed",
                ],
                outputs="quality_findings",
                name="check_quality",
            ),
            node(
                report_validation,
                inputs=[
                    "contract_report",
                    "quality_findings",
                    "review_outcome",
                    "image_store",
                    "params:validate",
                ],
                outputs=["validation_report", "validation_report_markdown", "label_review"],
                name="report_validation",
            ),
            node(
                gate_manifest,
                inputs=["validation_report", "reviewed_manifest"],
                outputs="validated_manifest",
                name="gate_manifest",
            ),
        ]
    )
