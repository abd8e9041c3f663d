"""The split stage: validated manifest → stable train/val/test assignment and its summary."""

from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.split.nodes import split_manifest, summarise_splits


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                split_manifest,
                inputs=["validated_manifest", "params:split", "params:seed"],
                outputs="splits",
                name="split_manifest_node",
            ),
            node(
                summarise_splits,
                inputs="splits",
                outputs="split_summary",
                name="summarise_splits_node",
            ),
        ]
    )
