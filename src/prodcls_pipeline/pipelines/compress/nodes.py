"""Compress: export to ONNX, then quantise, prune and distil, and compare every variant on CPU."""

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from prodcls_pipeline.batch_norm import match_batch_norm, record_input_statistics
from prodcls_pipeline.classifier import build_classifier, checkpoint_preprocessing
from prodcls_pipeline.compression import (
    REFERENCE_VARIANT,
    DeployRule,
    compare_variants,
    render_report,
    sample_split,
)
from prodcls_pipeline.distillation import fine_tune_student
from prodcls_pipeline.export import export_onnx, quantize_int8
from prodcls_pipeline.finetune import trainable_in_mode
from prodcls_pipeline.inference import ImageSource, class_indices, image_batches, labelled_batches
from prodcls_pipeline.pruning import prune_channels, prune_unstructured

INT8_VARIANT = "int8"
_METHODS = {
    REFERENCE_VARIANT: "the trained classifier exported as is",
    INT8_VARIANT: "fp32 quantised to int8 (static, QDQ, per-channel weights)",
}
Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]


def export_fp32(classifier: dict[str, Any]) -> bytes:
    """The trained classifier as an fp32 ONNX model."""
    return _export(build_classifier(classifier), classifier)


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


def prune(
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    params: dict[str, Any],
    train_params: dict[str, Any],
    seed: int,
) -> dict[str, dict[str, Any]]:
    """{variant: {onnx, method}}: each sparsity of global unstructured magnitude pruning and each
    fraction of channel pruning, after a recovery fine-tune of what `train.mode` trained."""
    pruning = params["pruning"]
    batches = _fine_tune_batches(classifier, splits, image_store, params, seed)
    model = record_input_statistics(build_classifier(classifier), batches)
    trainable = trainable_in_mode(model, train_params["mode"], train_params["partial_block"])
    recovery = {
        "batches": batches,
        "trainable": trainable,
        "epochs": pruning["recovery_epochs"],
        "learning_rate": pruning["recovery_learning_rate"],
        "seed": seed,
    }
    recovered = (
        "; batch norm matched to the unpruned model's, then "
        f"{pruning['recovery_epochs']} recovery epoch(s) of what {train_params['mode']} mode trains"
    )
    variants = {}
    for sparsity in pruning["unstructured_sparsities"]:
        pruned = fine_tune_student(
            match_batch_norm(prune_unstructured(model, sparsity), batches),
            keep_zeros=True,
            description=f"recover unstructured-{_percent(sparsity)}",
            **recovery,
        )
        method = f"{sparsity:.0%} of conv/linear weights zeroed (global magnitude)" + recovered
        variants[f"unstructured-{_percent(sparsity)}"] = _variant(pruned, classifier, method)
    for fraction in pruning["channel_fractions"]:
        pruned = fine_tune_student(
            match_batch_norm(prune_channels(model, fraction), batches),
            description=f"recover channels-{_percent(fraction)}",
            **recovery,
        )
        method = f"{fraction:.0%} of every block's expansion channels removed" + recovered
        variants[f"channels-{_percent(fraction)}"] = _variant(pruned, classifier, method)
    return variants


def distill(
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    params: dict[str, Any],
    seed: int,
) -> dict[str, dict[str, Any]]:
    """{variant: {onnx, method}}: the fine-tuned model taught to a channel-pruned copy of
    itself, every student parameter trained; empty when distillation is disabled."""
    settings = params["distillation"]
    if not settings["enabled"]:
        return {}
    teacher = build_classifier(classifier)
    fraction = settings["student_channel_fraction"]
    batches = _fine_tune_batches(classifier, splits, image_store, params, seed)
    recorded = record_input_statistics(teacher, batches)
    student = fine_tune_student(
        match_batch_norm(prune_channels(recorded, fraction), batches),
        batches=batches,
        teacher=teacher,
        trainable=lambda name: True,
        epochs=settings["epochs"],
        learning_rate=settings["learning_rate"],
        temperature=settings["temperature"],
        alpha=settings["alpha"],
        seed=seed,
        description="distil",
    )
    method = (
        f"student: the model with {fraction:.0%} of its expansion channels removed and batch "
        "norm matched to the unpruned model's, distilled "
        f"from the full model for {settings['epochs']} epoch(s) (T={settings['temperature']}, "
        f"alpha={settings['alpha']})"
    )
    return {f"distilled-channels-{_percent(fraction)}": _variant(student, classifier, method)}


def compare(
    onnx_fp32: bytes,
    onnx_int8: bytes,
    pruned: dict[str, dict[str, Any]],
    distilled: dict[str, dict[str, Any]],
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    params: dict[str, Any],
    seed: int,
) -> tuple[dict[str, bytes], dict[str, Any], str]:
    """Every variant's ONNX file, and their size, CPU speed and full-test-split accuracy side by
    side with the variant the deploy rule picks, as JSON and Markdown."""
    variants = {
        REFERENCE_VARIANT: {"onnx": onnx_fp32, "method": _METHODS[REFERENCE_VARIANT]},
        INT8_VARIANT: {"onnx": onnx_int8, "method": _METHODS[INT8_VARIANT]},
        **pruned,
        **distilled,
    }
    models = {name: variant["onnx"] for name, variant in variants.items()}
    test = splits.loc[splits["split"] == "test"].sort_values("sha256")
    benchmark = sample_split(splits, "test", params["benchmark_images"], seed)
    report = compare_variants(
        models=models,
        methods={name: variant["method"] for name, variant in variants.items()},
        rule=DeployRule.from_params(params),
        test_batches=_batches(image_store, test["sha256"].tolist(), classifier, params, "test"),
        test_labels=test["label"].tolist(),
        class_labels=classifier["labels"],
        benchmark_images=np.concatenate(list(_batches(image_store, benchmark, classifier, params))),
        batch_size=params["benchmark_batch_size"],
        repeats=params["benchmark_repeats"],
    )
    return models, report, render_report(report)


def _variant(model: nn.Module, classifier: dict[str, Any], method: str) -> dict[str, Any]:
    return {"onnx": _export(model, classifier), "method": method}


def _export(model: nn.Module, classifier: dict[str, Any]) -> bytes:
    """`model` as ONNX at the input size the classifier was trained for."""
    return export_onnx(model.eval(), checkpoint_preprocessing(classifier).input_size)


def _percent(share: float) -> str:
    return f"{round(share * 100):d}"


def _fine_tune_batches(
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    params: dict[str, Any],
    seed: int,
) -> Batches:
    """A seeded sample of training images with their class indices, decoded afresh each epoch."""
    chosen = sample_split(splits, "train", params["fine_tune_images"], seed)
    targets = class_indices(splits, chosen, classifier["labels"])
    preprocessing = checkpoint_preprocessing(classifier)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, indices in labelled_batches(
            image_store, chosen, targets, preprocessing, params["fine_tune_batch_size"]
        ):
            yield torch.from_numpy(images), torch.from_numpy(indices)

    return batches


def _batches(
    store: ImageSource,
    sha256s: list[str],
    classifier: dict[str, Any],
    params: dict[str, Any],
    description: str | None = None,
) -> Iterator[np.ndarray]:
    preprocessing = checkpoint_preprocessing(classifier)
    return image_batches(store, sha256s, preprocessing, params["benchmark_batch_size"], description)
