"""The compressed variants side by side: which images calibrate and benchmark, the report that
compares them on the test split, and the rule that picks the one to deploy."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from prodcls_pipeline.compression.int8 import float_output_nodes, is_quantized
from prodcls_pipeline.core.numbers import round_measure, round_metric
from prodcls_pipeline.core.rules import Rule
from prodcls_pipeline.core.scores import classification_scores, hit_rate
from prodcls_pipeline.core.tables import Markdown, bold, code, escape, markdown_table
from prodcls_pipeline.models.onnx_export import parameter_count
from prodcls_pipeline.runtime.batching import predict_top1
from prodcls_pipeline.runtime.sessions import available_cores, create_session
from prodcls_pipeline.runtime.timing import measure

REFERENCE_VARIANT = "fp32"
_BYTES_PER_MB = 1_000_000


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
    """Size, speed and test accuracy of each variant, its agreement with the fp32 reference, the
    nodes each quantised variant left in float, and the variant `rule` deploys. `methods` says in
    a few words how each variant was made.

    `test_batches` is consumed once: every variant scores each batch before the next is decoded.
    """
    if not test_labels:
        raise ValueError("The test split is empty: there is nothing to compare the variants on")
    sessions = {variant: create_session(model) for variant, model in models.items()}
    predicted = predict_top1(sessions, test_batches)
    accuracy = {
        variant: classification_scores(
            test_labels, [class_labels[i] for i in indices], class_labels
        )
        for variant, indices in predicted.items()
    }
    variants = {
        variant: {
            "variant": variant,
            "method": methods[variant],
            "size_mb": round_measure(len(models[variant]) / _BYTES_PER_MB),
            "params": parameter_count(models[variant]),
            "nonzero_params": parameter_count(models[variant], nonzero=True),
            **_timing(sessions[variant], benchmark_images, batch_size, repeats),
            **accuracy[variant],
            "delta_top1": round_metric(
                accuracy[variant]["top1"] - accuracy[REFERENCE_VARIANT]["top1"]
            ),
            "agreement_with_fp32": round_metric(
                hit_rate(predicted[variant] == predicted[REFERENCE_VARIANT])
            ),
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
        "unquantized_nodes": {
            variant: float_output_nodes(model)
            for variant, model in models.items()
            if is_quantized(model)
        },
        "test_images": len(test_labels),
        "benchmark_images": len(benchmark_images),
        "benchmark_batch_size": batch_size,
        "throughput_column": throughput_key(batch_size),
        "benchmark_repeats": repeats,
        "onnxruntime_version": ort.__version__,
        "cpu_cores": available_cores(),
    }


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
    return {field: round_measure(value) for field, value in measured.items()}


def throughput_key(batch_size: int) -> str:
    """The report column of CPU images/s at `batch_size`, e.g. `ips_b32`."""
    return f"ips_b{batch_size}"


@dataclass(frozen=True)
class DeployRule(Rule):
    """Deploy the fastest variant whose top-1 is at most `max_top1_drop` below fp32's."""

    params_section: ClassVar[str] = "compress.deploy_rule"

    max_top1_drop: float
    speed: str

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
    header = [
        "variant",
        "how",
        "size MB",
        "params",
        "img/s b1",
        f"img/s b{report['benchmark_batch_size']}",
        "p50 ms",
        "p95 ms",
        "top-1",
        "macro-F1",
        "Δ top-1",
    ]
    rows = [
        [
            Markdown(f"{bold(name)} (deployed)") if name == report["deployable"] else name,
            row.get("method", ""),
            f"{row['size_mb']:.2f}",
            f"{row['params']:,}",
            f"{row['ips_b1']:.1f}",
            f"{row[speed_column]:.1f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p95_ms']:.2f}",
            f"{row['top1']:.4f}",
            f"{row['macro_f1']:.4f}",
            f"{row['delta_top1']:+.4f}",
        ]
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
            markdown_table(header, rows),
            "",
            f"Deployed: {bold(report['deployable'])}, "
            f"by the rule: {report['deploy_rule']['text']}.",
            "",
            *_unquantized_lines(report["unquantized_nodes"]),
        ]
    )


def _unquantized_lines(unquantized: Mapping[str, Sequence[dict[str, str]]]) -> list[str]:
    """One line per quantised variant naming the nodes that compute its outputs in float."""
    lines = []
    for variant, nodes in unquantized.items():
        named = ", ".join(f"{code(node['name'])} ({escape(node['op_type'])})" for node in nodes)
        lines += [
            f"Left in float in {variant}, after its last dequantisation: "
            f"{named or 'nothing (its outputs are dequantised int8)'}.",
            "",
        ]
    return lines
