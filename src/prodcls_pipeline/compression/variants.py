"""The compressed variants side by side: which images calibrate and benchmark, the report that
compares them on the test split, and the rule that picks the one to deploy."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
from sklearn.metrics import f1_score

from prodcls_pipeline.models.onnx_export import parameter_count
from prodcls_pipeline.runtime.batching import predict_top1
from prodcls_pipeline.runtime.sessions import available_cores, create_session
from prodcls_pipeline.runtime.timing import measure

REFERENCE_VARIANT = "fp32"
_BYTES_PER_MB = 1_000_000
# Rates (accuracy, agreement) keep the evaluate stage's precision; sizes and timings need less.
_RATE_DIGITS = 4
_MEASURE_DIGITS = 2


def compare_variants(
    models: Mapping[str, bytes],
    methods: Mapping[str, str],
    rule: "DeployRule",
    test_batches: Iterable[np.ndarray],
    test_labels: Sequence[str],
    class_labels: Sequence[str],
    benchmark_images: np.ndarray,
    batch_size: int,
    repeats: int,
) -> dict[str, Any]:
    """Size, speed and test accuracy of each variant, its agreement with the fp32 reference, and
    the variant `rule` deploys. `methods` says in a few words how each variant was made.

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
            "method": methods[variant],
            "size_mb": round(len(models[variant]) / _BYTES_PER_MB, _MEASURE_DIGITS),
            "params": parameter_count(models[variant]),
            "nonzero_params": parameter_count(models[variant], nonzero=True),
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
        "deployable": choose_deployable(variants, rule),
        "deploy_rule": {
            "max_top1_drop": rule.max_top1_drop,
            "speed": rule.speed,
            "text": rule.describe(),
        },
        "test_images": len(test_labels),
        "benchmark_images": len(benchmark_images),
        "benchmark_batch_size": batch_size,
        "throughput_column": throughput_key(batch_size),
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
    timing = measure(session, images, batch_size, repeats)
    measured = {
        "ips_b1": timing.ips_b1,
        throughput_key(batch_size): timing.ips_batch,
        "p50_ms": timing.p50_ms,
        "p95_ms": timing.p95_ms,
    }
    return {field: round(value, _MEASURE_DIGITS) for field, value in measured.items()}


def throughput_key(batch_size: int) -> str:
    """The report column of CPU images/s at `batch_size`, e.g. `ips_b32`."""
    return f"ips_b{batch_size}"


@dataclass(frozen=True)
class DeployRule:
    """Deploy the fastest variant whose top-1 is at most `max_top1_drop` below fp32's."""

    max_top1_drop: float
    speed: str

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "DeployRule":
        rule = params["deploy_rule"]
        return cls(max_top1_drop=float(rule["max_top1_drop"]), speed=str(rule["speed"]))

    def describe(self) -> str:
        return (
            f"the highest {self.speed} among variants whose test top-1 is at most "
            f"{self.max_top1_drop:.4f} below {REFERENCE_VARIANT}"
        )


def choose_deployable(variants: Mapping[str, dict[str, Any]], rule: DeployRule) -> str:
    """The variant `rule` picks; fp32 always qualifies, so there is always one."""
    eligible = [name for name, row in variants.items() if row["delta_top1"] >= -rule.max_top1_drop]
    missing = [name for name in eligible if rule.speed not in variants[name]]
    if missing:
        raise ValueError(
            f"compress.deploy_rule.speed {rule.speed!r} is not a report column; "
            f"columns: {', '.join(variants[missing[0]])}"
        )
    return max(eligible, key=lambda name: variants[name][rule.speed])


def render_report(report: dict[str, Any]) -> str:
    """The compression report as a Markdown table, the deployable variant marked."""
    speed_column = report["throughput_column"]
    header = (
        f"| variant | how | size MB | params | img/s b1 | img/s b{report['benchmark_batch_size']} "
        "| p50 ms | p95 ms | top-1 | macro-F1 | Δ top-1 |"
    )
    rows = [
        f"| {'**' + name + '** (deployed)' if name == report['deployable'] else name} "
        f"| {row.get('method', '')} | {row['size_mb']:.2f} | {row['params']:,} "
        f"| {row['ips_b1']:.1f} | {row[speed_column]:.1f} | {row['p50_ms']:.2f} "
        f"| {row['p95_ms']:.2f} | {row['top1']:.4f} | {row['macro_f1']:.4f} "
        f"| {row['delta_top1']:+.4f} |"
        for name, row in report["variants"].items()
    ]
    return "\n".join(
        [
            "# Compression report",
            "",
            f"{report['test_images']} test images; speed on {report['benchmark_images']} test "
            f"images, {report['cpu_cores']} CPU cores, ONNX Runtime "
            f"{report['onnxruntime_version']}, median of {report['benchmark_repeats']} passes.",
            "",
            header,
            "|" + " --- |" * 11,
            *rows,
            "",
            f"Deployed: **{report['deployable']}**, by the rule: {report['deploy_rule']['text']}.",
            "",
        ]
    )
