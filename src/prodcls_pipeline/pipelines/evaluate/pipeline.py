from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.evaluate import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                nodes.predict_test_split,
                inputs=["classifier", "splits", "image_store", "params:evaluate"],
                outputs="test_predictions",
                name="predict_test_split",
            ),
            node(
                nodes.compute_metrics,
                inputs=["test_predictions", "classifier", "params:evaluate"],
                outputs=["classification_metrics", "classification_report", "per_class_metrics"],
                name="compute_metrics",
            ),
            node(
                nodes.measure_calibration,
                inputs=["test_predictions", "params:evaluate"],
                outputs="reliability",
                name="measure_calibration",
            ),
            node(
                nodes.measure_robustness,
                inputs=["classifier", "splits", "image_store", "params:evaluate", "params:seed"],
                outputs="robustness_metrics",
                name="measure_robustness",
            ),
            node(
                nodes.assemble_metrics,
                inputs=["classification_metrics", "reliability", "robustness_metrics"],
                outputs="metrics",
                name="assemble_metrics",
            ),
            node(
                nodes.plot_confusion_matrix,
                inputs=["test_predictions", "classifier"],
                outputs="confusion_matrix",
                name="plot_confusion_matrix",
            ),
            node(
                nodes.plot_coarse_confusion_matrix,
                inputs=["test_predictions", "classifier"],
                outputs="coarse_confusion_matrix",
                name="plot_coarse_confusion_matrix",
            ),
            node(
                nodes.plot_reliability_diagram,
                inputs="reliability",
                outputs="reliability_diagram",
                name="plot_reliability_diagram",
            ),
            node(
                nodes.plot_worst_mistakes,
                inputs=["test_predictions", "image_store", "params:evaluate"],
                outputs="worst_mistakes",
                name="plot_worst_mistakes",
            ),
            node(
                nodes.log_evaluation,
                inputs=[
                    "metrics",
                    "classification_report",
                    "reliability",
                    "confusion_matrix",
                    "coarse_confusion_matrix",
                    "reliability_diagram",
                    "worst_mistakes",
                    "mlflow_run",
                ],
                outputs=None,
                name="log_evaluation",
            ),
        ]
    )
