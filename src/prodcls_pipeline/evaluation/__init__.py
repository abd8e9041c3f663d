"""Scoring a classifier on held-out images: metrics and plots, calibration, attacks and
corruptions, the gallery of worst mistakes.

- `attacks`: FGSM and PGD attacks on normalised image batches, with the budget in pixel units.
- `calibration`: Calibration: does a confidence of 0.8 mean the prediction is right 8 times in 10?
- `gallery`: The test images the model got wrong with the most confidence: where to look first.
- `metrics`: Test-split metrics and plots. Inputs are predictions, never the training data.
- `prediction`: Class probabilities of the full classifier on stored images, run by ONNX Runtime.
- `robustness`: How top-1 accuracy holds up under adversarial attacks and common image corruptions.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "attacks": ["fgsm", "pgd"],
        "calibration": [
            "calibration_metrics",
            "fit_temperature",
            "reliability_figure",
            "reliability_table",
        ],
        "gallery": ["mistake_gallery", "worst_mistakes"],
        "metrics": [
            "classification_metrics",
            "coarse_confusion_figure",
            "confusion_figure",
            "figure_png",
            "per_class_metrics",
            "prediction_table",
        ],
        "prediction": ["predict_probabilities"],
        "robustness": ["AttackBudget", "BATCH_SIZE", "corruptions", "robustness_scores"],
    },
)
