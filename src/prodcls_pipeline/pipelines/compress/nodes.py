"""Compress: export the classifier to ONNX, quantise it to int8, compare the two on CPU."""

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from prodcls_pipeline.classifier import build_classifier, checkpoint_preprocessing
from prodcls_pipeline.compression import compare_variants, sample_split
from prodcls_pipeline.export import export_onnx, quantize_int8
from prodcls_pipeline.inference import ImageSource, image_batches


def export_fp32(classifier: dict[str, Any]) -> bytes:
    """The trained classifier as an fp32 ONNX model."""
    input_size = checkpoint_preprocessing(classifier).input_size
    return export_onnx(build_classifier(classifier), input_size)


def quantize(
    onnx_fp32: bytes,
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    params: dict[str, Any],
    seed: int,
) -> bytes:
    """Static int8 quantisation, calibrated on a seeded sample of training images."""
    calibration = sample_split(splits, "train", params["calibration_images"], seed)
    return quantize_int8(onnx_fp32, _batches(image_store, calibration, classifier, params))


def compare(
    onnx_fp32: bytes,
    onnx_int8: bytes,
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Size, CPU speed and full-test-split accuracy of fp32 and int8, side by side."""
    test = splits.loc[splits["split"] == "test"].sort_values("sha256")
    benchmark = sample_split(splits, "test", params["benchmark_images"], seed)
    return compare_variants(
        models={"fp32": onnx_fp32, "int8": onnx_int8},
        test_batches=_batches(image_store, test["sha256"].tolist(), classifier, params, "test"),
        test_labels=test["label"].tolist(),
        class_labels=classifier["labels"],
        benchmark_images=np.concatenate(list(_batches(image_store, benchmark, classifier, params))),
        batch_size=params["benchmark_batch_size"],
        repeats=params["benchmark_repeats"],
    )


def _batches(
    store: ImageSource,
    sha256s: list[str],
    classifier: dict[str, Any],
    params: dict[str, Any],
    description: str | None = None,
) -> Iterator[np.ndarray]:
    preprocessing = checkpoint_preprocessing(classifier)
    return image_batches(store, sha256s, preprocessing, params["benchmark_batch_size"], description)
