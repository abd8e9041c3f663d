from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.evaluate import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                nodes.predict_test_split,
                inputs=["classifier", "splits", "embedding_store", "params:evaluate"],
                outputs="test_predictions",
                name="predict_test_split",
            ),
            node(
                nodes.compute_metrics,
                inputs=["test_predictions", "classifier", "params:evaluate"],
                outputs=["metrics", "classification_report"],
                name="compute_metrics",
            ),
            node(
                nodes.plot_confusion_matrix,
                inputs=["test_predictions", "classifier"],
                outputs="confusion_matrix",
                name="plot_confusion_matrix",
            ),
            node(
                nodes.log_evaluation,
                inputs=["metrics", "classification_report", "confusion_matrix", "mlflow_run"],
                outputs=None,
                name="log_evaluation",
            ),
        ]
    )
