"""fp32 versus int8: which images calibrate and benchmark, and the report that compares them."""

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnxruntime as ort
import pandas as pd
from sklearn.metrics import f1_score

from prodcls_pipeline.export import parameter_count
from prodcls_pipeline.inference import available_cores, create_session, measure, predict_top1

REFERENCE_VARIANT = "fp32"
_BYTES_PER_MB = 1_000_000
# Rates (accuracy, agreement) keep the evaluate stage's precision; sizes and timings need less.
_RATE_DIGITS = 4
_MEASURE_DIGITS = 2


def sample_split(splits: pd.DataFrame, split: str, count: int, seed: int) -> list[str]:
    """`count` sha256s of one split, the same for the same rows and seed whatever their order."""
    candidates = np.sort(splits.loc[splits["split"] == split, "sha256"].to_numpy(dtype=str))
    chosen = np.random.default_rng(seed).permutation(len(candidates))[:count]
    return candidates[chosen].tolist()


def compare_variants(
    models: Mapping[str, bytes],
    test_batches: Iterable[np.ndarray],
    test_labels: Sequence[str],
    class_labels: Sequence[str],
    benchmark_images: np.ndarray,
    batch_size: int,
    repeats: int,
) -> dict:
    """Size, speed and test accuracy of each variant, and its agreement with the fp32 reference.

    `test_batches` is consumed once: every variant scores each batch before the next is decoded.
    """
    if not test_labels:
        raise ValueError("The test split is empty: there is nothing to compare the variants on")
    sessions = {variant: create_session(model) for variant, model in models.items()}
    predicted = predict_top1(sessions, test_batches)
    accuracy = {
        variant: _accuracy(test_labels, [class_labels[i] for i in indices], class_labels)
        for variant, indices in predicted.items()
    }
    variants = {
        variant: {
            "variant": variant,
            "size_mb": round(len(models[variant]) / _BYTES_PER_MB, _MEASURE_DIGITS),
            "params": parameter_count(models[variant]),
            **_timing(sessions[variant], benchmark_images, batch_size, repeats),
            **accuracy[variant],
            "delta_top1": round(
                accuracy[variant]["top1"] - accuracy[REFERENCE_VARIANT]["top1"], _RATE_DIGITS
            ),
            "agreement_with_fp32": _rate(predicted[variant] == predicted[REFERENCE_VARIANT]),
        }
        for variant in models
    }
    return {
        "variants": variants,
        "test_images": len(test_labels),
        "benchmark_images": len(benchmark_images),
        "benchmark_batch_size": batch_size,
        "benchmark_repeats": repeats,
        "onnxruntime_version": ort.__version__,
        "cpu_cores": available_cores(),
    }


def _accuracy(
    truth: Sequence[str], predicted: Sequence[str], class_labels: Sequence[str]
) -> dict[str, float]:
    """Top-1 and macro F1 over the model's classes, as the evaluate stage computes them."""
    f1 = f1_score(truth, predicted, labels=list(class_labels), average="macro", zero_division=0)
    return {
        "top1": _rate(np.asarray(truth) == np.asarray(predicted)),
        "macro_f1": round(float(f1), _RATE_DIGITS),
    }


def _rate(hits: np.ndarray) -> float:
    return round(float(np.mean(hits)), _RATE_DIGITS)


def _timing(
    session: ort.InferenceSession, images: np.ndarray, batch_size: int, repeats: int
) -> dict[str, float]:
    timing = measure(session, images, batch_size, repeats).to_dict()
    return {field: round(value, _MEASURE_DIGITS) for field, value in timing.items()}
