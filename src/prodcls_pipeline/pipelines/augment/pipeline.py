"""The augment stage: the training augmentation policy and a preview of it on real images."""

from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.augment.nodes import (
    make_augmentation_policy,
    make_augmentation_preview,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                make_augmentation_policy,
                inputs=["params:augment", "params:seed"],
                outputs="augmentation_policy",
                name="make_augmentation_policy_node",
            ),
            node(
                make_augmentation_preview,
                inputs=[
                    "splits",
                    "image_store",
                    "augmentation_policy",
                    "params:augment",
                    # The preview shows views at the input size of the backbone that trains.
                    "params:train.backbone",
                    "params:train.weights_file",
                    "params:seed",
                ],
                outputs="augmentation_preview",
                name="make_augmentation_preview_node",
            ),
        ]
    )
