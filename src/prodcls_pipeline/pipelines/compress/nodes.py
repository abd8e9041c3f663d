"""Compress: export to ONNX, then quantise, prune and distil, and compare every variant on CPU."""

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from prodcls_pipeline.compression.batch_norm import match_batch_norm, record_input_statistics
from prodcls_pipeline.compression.int8 import quantize_int8
from prodcls_pipeline.compression.pruning import prune_channels, prune_unstructured, zero_keeper
from prodcls_pipeline.compression.variants import (
    REFERENCE_VARIANT,
    DeployRule,
    compare_variants,
    render_report,
)
from prodcls_pipeline.core.schema import TEST, VAL
from prodcls_pipeline.data.preprocessing import eval_transform
from prodcls_pipeline.data.splitting import sample_split
from prodcls_pipeline.framework.params import CompressParams, TrainParams
from prodcls_pipeline.models.classifier import build_classifier, checkpoint_preprocessing
from prodcls_pipeline.models.onnx_export import export_onnx
from prodcls_pipeline.runtime.batching import (
    ImageSource,
    class_indices,
    image_batches,
    labelled_batches,
)
from prodcls_pipeline.training.fine_tune import FineTune, fine_tune_if_better
from prodcls_pipeline.training.modes import trainable_in_mode
from prodcls_pipeline.training.samples import ImageSamples, TensorSamples
from prodcls_pipeline.training.tasks import DistillationTask, RecoveryTask

INT8_VARIANT = "int8"
_METHODS = {
    REFERENCE_VARIANT: "the trained classifier exported as is",
    INT8_VARIANT: "fp32 quantised to int8 (static, QDQ, per-channel weights), the head in float",
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
    compress_params: CompressParams,
    seed: int,
) -> bytes:
    """Static int8 quantisation, calibrated on a seeded sample of training images."""
    params = compress_params.model_dump()
    calibration = sample_split(splits, "train", params["calibration_images"], seed)
    return quantize_int8(onnx_fp32, _batches(image_store, calibration, classifier, params))


def prune(
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    compress_params: CompressParams,
    train_params: TrainParams,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """{variant: {onnx, method}}: each sparsity of global unstructured magnitude pruning and each
    fraction of channel pruning, batch norm matched to the unpruned model's, then a recovery
    fine-tune of what `train.mode` trained, kept only if it raises val top-1; empty when no
    sparsity or fraction is asked for."""
    params = compress_params.model_dump()
    pruning = params["pruning"]
    if not pruning["unstructured_sparsities"] and not pruning["channel_fractions"]:
        return {}
    samples = _fine_tune_samples(classifier, splits, image_store, params, seed)
    batches = _in_batches(samples, params["fine_tune_batch_size"])
    val = _val_samples(classifier, splits, image_store, params)
    model = record_input_statistics(build_classifier(classifier), batches)
    recovery = _fine_tune(
        trainable_in_mode(model, train_params.mode, train_params.partial_block),
        pruning["recovery_epochs"],
        pruning["recovery_learning_rate"],
        params,
        seed,
    )
    recovered = (
        f"{pruning['recovery_epochs']} recovery epoch(s) of what {train_params.mode} mode trains"
    )
    pruned = {
        f"unstructured-{_percent(sparsity)}": (
            prune_unstructured(model, sparsity),
            f"{sparsity:.0%} of conv/linear weights zeroed (global magnitude)",
        )
        for sparsity in pruning["unstructured_sparsities"]
    } | {
        f"channels-{_percent(fraction)}": (
            prune_channels(model, fraction),
            f"{fraction:.0%} of every block's expansion channels removed",
        )
        for fraction in pruning["channel_fractions"]
    }
    variants = {}
    for name, (network, how) in pruned.items():
        matched = match_batch_norm(network, batches)
        task = RecoveryTask(zero_keeper(matched) if name.startswith("unstructured") else None)
        guarded = fine_tune_if_better(matched, task, samples, val, recovery, f"recover {name}")
        method = f"{how}; batch norm matched to the unpruned model's; {guarded.describe(recovered)}"
        variants[name] = _variant(guarded.model, classifier, method)
    return variants


def distill(
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    compress_params: CompressParams,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """{variant: {onnx, method}}: the fine-tuned model taught to a channel-pruned copy of
    itself, every student parameter trained and kept only if it raises val top-1; empty when
    distillation is disabled."""
    params = compress_params.model_dump()
    settings = params["distillation"]
    if not settings["enabled"]:
        return {}
    teacher = build_classifier(classifier)
    fraction = settings["student_channel_fraction"]
    samples = _fine_tune_samples(classifier, splits, image_store, params, seed)
    batches = _in_batches(samples, params["fine_tune_batch_size"])
    guarded = fine_tune_if_better(
        match_batch_norm(
            prune_channels(record_input_statistics(teacher, batches), fraction), batches
        ),
        DistillationTask(teacher, settings["temperature"], settings["alpha"]),
        samples,
        _val_samples(classifier, splits, image_store, params),
        _fine_tune(lambda name: True, settings["epochs"], settings["learning_rate"], params, seed),
        "distil",
    )
    distilled = (
        f"distillation from the full model for {settings['epochs']} epoch(s) "
        f"(T={settings['temperature']}, alpha={settings['alpha']})"
    )
    method = (
        f"student: the model with {fraction:.0%} of its expansion channels removed and batch "
        f"norm matched to the unpruned model's; {guarded.describe(distilled)}"
    )
    return {f"distilled-channels-{_percent(fraction)}": _variant(guarded.model, classifier, method)}


def compare(
    onnx_fp32: bytes,
    onnx_int8: bytes,
    pruned: dict[str, dict[str, Any]],
    distilled: dict[str, dict[str, Any]],
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    compress_params: CompressParams,
    seed: int,
) -> tuple[dict[str, bytes], dict[str, Any], str]:
    """Every variant's ONNX file, and their size, CPU speed and full-test-split accuracy side by
    side with the variant the deploy rule picks, as JSON and Markdown."""
    params = compress_params.model_dump()
    variants = {
        REFERENCE_VARIANT: {"onnx": onnx_fp32, "method": _METHODS[REFERENCE_VARIANT]},
        INT8_VARIANT: {"onnx": onnx_int8, "method": _METHODS[INT8_VARIANT]},
        **pruned,
        **distilled,
    }
    models = {name: variant["onnx"] for name, variant in variants.items()}
    test = splits.loc[splits["split"] == TEST].sort_values("sha256")
    benchmark = sample_split(splits, TEST, params["benchmark_images"], seed)
    report = compare_variants(
        models=models,
        methods={name: variant["method"] for name, variant in variants.items()},
        rule=DeployRule.from_params(params["deploy_rule"]),
        test_batches=_batches(image_store, test["sha256"].tolist(), classifier, params, TEST),
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


def _fine_tune(
    trainable: Callable[[str], bool],
    epochs: int,
    learning_rate: float,
    params: dict[str, Any],
    seed: int,
) -> FineTune:
    """A fine-tune on `_fine_tune_samples`, a seeded sample already in random order: it is not
    reshuffled every epoch."""
    batch_size = params["fine_tune_batch_size"]
    return FineTune(trainable, epochs, learning_rate, batch_size, seed, shuffle=False)


def _fine_tune_samples(
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    params: dict[str, Any],
    seed: int,
) -> ImageSamples:
    """A seeded sample of training images with their class indices, decoded afresh each epoch."""
    chosen = sample_split(splits, "train", params["fine_tune_images"], seed)
    return ImageSamples(
        chosen,
        class_indices(splits, chosen, classifier["labels"]),
        image_store.open,
        eval_transform(checkpoint_preprocessing(classifier)),
    )


def _in_batches(samples: ImageSamples, batch_size: int) -> Batches:
    """`samples` in order as (images, class indices) batches, for batch-norm statistics."""

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(samples), batch_size):
            images, targets, _ = samples[range(start, min(start + batch_size, len(samples)))]
            yield images, targets

    return batches


def _val_samples(
    classifier: dict[str, Any],
    splits: pd.DataFrame,
    image_store: ImageSource,
    params: dict[str, Any],
) -> TensorSamples:
    """The whole val split with class indices, decoded once: each guarded fine-tune scores on it."""
    sha256s = splits.loc[splits["split"] == VAL].sort_values("sha256")["sha256"].tolist()
    images, targets = zip(
        *labelled_batches(
            image_store,
            sha256s,
            class_indices(splits, sha256s, classifier["labels"]),
            checkpoint_preprocessing(classifier),
            params["fine_tune_batch_size"],
        ),
        strict=True,
    )
    return TensorSamples(torch.from_numpy(np.concatenate(images)), np.concatenate(targets))


def _batches(
    store: ImageSource,
    sha256s: list[str],
    classifier: dict[str, Any],
    params: dict[str, Any],
    description: str | None = None,
) -> Iterator[np.ndarray]:
    preprocessing = checkpoint_preprocessing(classifier)
    return image_batches(store, sha256s, preprocessing, params["benchmark_batch_size"], description)
