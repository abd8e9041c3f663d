from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.train import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                nodes.start_training,
                # warm_start: champion starts from this model's champion
                inputs=["params:train", "params:package.registered_model_name"],
                outputs="warm_start",
                name="start_training",
            ),
            node(
                nodes.select_training_images,
                inputs=["splits", "warm_start", "params:train", "params:seed"],
                outputs=["training_rows", "replay_counts"],
                name="select_training_images",
            ),
            node(
                nodes.embed_images,
                inputs=[
                    "splits",
                    "training_rows",
                    "image_store",
                    "embedding_store",
                    "augmentation_policy",
                    "params:train",
                    "params:seed",
                ],
                outputs="embedding_counts",
                name="embed_images",
            ),
            node(
                nodes.fit_classifier,
                inputs=[
                    "splits",
                    "training_rows",
                    "replay_counts",
                    "image_store",
                    "embedding_store",
                    "augmentation_policy",
                    "embedding_counts",
                    "training_checkpoints",
                    "warm_start",
                    "params:train",
                    "params:seed",
                ],
                outputs=["classifier", "training_history"],
                name="fit_classifier",
            ),
            node(
                nodes.track_training,
                inputs=["classifier", "training_history", "splits", "params:train", "params:seed"],
                outputs="mlflow_run",
                name="track_training",
            ),
        ]
    )
