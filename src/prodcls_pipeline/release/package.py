"""The deployable model package: the ONNX model and everything needed to use and trust it.

The model card is rendered only from measured values; a value that is absent reads "not measured",
never a placeholder, so a reader can tell a missing number from a bad one.
"""

import hashlib
import json
from dataclasses import asdict
from typing import Any

import onnx
import pandas as pd

from prodcls_pipeline.core.tables import Markdown, code, escape, markdown_table
from prodcls_serving.common.decoding import ImageLimits
from prodcls_serving.files import (
    IMAGE_LIMITS_KEY,
    LABEL_MAP_FILE,
    LINEAGE_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
)

# Registry tags a model version carries; each is a key of lineage.json.
TAG_KEYS = (
    "git_commit",
    "git_dirty",
    "raw_data_dvc_hash",
    "manifest_dvc_hash",
    "params_hash",
    "lock_hash",
    "validation_success",
    "test_top1",
    "variant",
)


def build_package(
    onnx_models: dict[str, bytes],
    model_name: str,
    classifier: dict[str, Any],
    metrics: dict[str, Any],
    per_class: pd.DataFrame,
    compression_report: dict[str, Any],
    manifest: pd.DataFrame,
    validation_report: dict[str, Any],
    lineage: dict[str, Any],
    image_limits: ImageLimits,
) -> dict[str, bytes]:
    """{file name: bytes} of the package of the variant the compression report deploys.

    `image_limits` are those the training data was ingested under: served images are held to
    the same ones.
    """
    variant = compression_report["deployable"]
    if variant not in onnx_models:
        raise ValueError(
            f"The compression report deploys {variant!r}, but the compress stage exported only "
            f"{', '.join(sorted(onnx_models))}"
        )
    model = onnx_models[variant]
    io_spec = onnx_io(model)
    _check_output_matches_labels(io_spec, list(classifier["labels"]))
    full_lineage = {
        "model_name": model_name,
        "variant": variant,
        "backbone": classifier["backbone"],
        "model_sha256": hashlib.sha256(model).hexdigest(),
        **lineage,
        "validation_success": bool(validation_report["success"]),
        "test_top1": metrics.get("top1"),
    }
    card = render_model_card(
        model_name=model_name,
        variant=variant,
        classifier=classifier,
        io_spec=io_spec,
        metrics=metrics,
        per_class=per_class,
        compression_report=compression_report,
        manifest=manifest,
        validation_report=validation_report,
        lineage=full_lineage,
    )
    return {
        MODEL_FILE: model,
        LABEL_MAP_FILE: _json(label_map(classifier)),
        PREPROCESSING_FILE: _json(
            preprocessing_spec(classifier["preprocessing"], io_spec, image_limits)
        ),
        MODEL_CARD_FILE: card.encode("utf-8"),
        LINEAGE_FILE: _json(full_lineage),
    }


# The files that decide what a served model answers; the card and lineage only describe it.
SERVED_FILES = (MODEL_FILE, LABEL_MAP_FILE, PREPROCESSING_FILE)


def served_digest(package: dict[str, bytes]) -> str:
    """sha256 over the names and bytes of the served files: equal digests answer alike."""
    digest = hashlib.sha256()
    for name in SERVED_FILES:
        digest.update(f"{name}\0{len(package[name])}\0".encode())
        digest.update(package[name])
    return digest.hexdigest()


def version_tags(lineage: dict[str, Any]) -> dict[str, str]:
    """The registry tags of a model version, from a package's lineage.json."""
    return {key: _tag_value(lineage.get(key)) for key in TAG_KEYS}


def label_map(classifier: dict[str, Any]) -> dict[str, Any]:
    """Class index → fine label, and fine label → coarse label ("" where there is none)."""
    labels = list(classifier["labels"])
    coarse = list(classifier.get("coarse_labels") or [""] * len(labels))
    return {
        "index_to_label": {str(index): label for index, label in enumerate(labels)},
        "label_to_coarse": dict(zip(labels, coarse, strict=True)),
    }


def preprocessing_spec(
    preprocessing: dict[str, Any], io_spec: dict[str, Any], image_limits: ImageLimits
) -> dict[str, Any]:
    """How a client turns an RGB image into the model's input, what comes out, and the largest
    image it accepts."""
    return {
        IMAGE_LIMITS_KEY: asdict(image_limits),
        "color_space": "RGB",
        "resize": {
            "shorter_side": int(preprocessing["resize_size"]),
            "interpolation": preprocessing.get("interpolation", "bicubic"),
        },
        "center_crop": int(preprocessing["input_size"]),
        "scale": "pixel / 255",
        "mean": list(preprocessing["mean"]),
        "std": list(preprocessing["std"]),
        "layout": "NCHW",
        **io_spec,
    }


def onnx_io(model: bytes) -> dict[str, Any]:
    """Input and output names and shapes of an ONNX model; symbolic dimensions by name."""
    graph = onnx.load_from_string(model).graph
    initialisers = {tensor.name for tensor in graph.initializer}
    (model_input,) = [value for value in graph.input if value.name not in initialisers]
    model_output = graph.output[0]
    return {
        "input_name": model_input.name,
        "input_shape": _shape(model_input),
        "input_dtype": _dtype(model_input),
        "output_name": model_output.name,
        "output_shape": _shape(model_output),
        "output_dtype": _dtype(model_output),
    }


def _shape(value: onnx.ValueInfoProto) -> list[int | str]:
    return [
        dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?")
        for dim in value.type.tensor_type.shape.dim
    ]


def _dtype(value: onnx.ValueInfoProto) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name


def _check_output_matches_labels(io_spec: dict[str, Any], labels: list[str]) -> None:
    classes = io_spec["output_shape"][-1] if io_spec["output_shape"] else None
    if isinstance(classes, int) and classes != len(labels):
        raise ValueError(
            f"The ONNX model outputs {classes} classes but the classifier has {len(labels)} labels"
        )


def _tag_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _json(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


NOT_MEASURED = "not measured"
WEAKEST_CLASSES = 5
_INTENDED_USE = """## Intended use

Suggests which of the {classes} known product classes a photo of a single product shows (and its
coarse group where one is defined), for a person or a downstream system that can check the
suggestion: checkout assistance, catalogue tagging, sorting of incoming photos.

## Limitations

- Closed set: a product outside the classes below still receives one of those labels.
- {calibration} Their expected calibration error on the test split is {ece}. Set any confidence
  threshold on held-out data.
- Accuracy is measured on photos like those in the drops (cameras, lighting, backgrounds); other
  conditions can lower it without warning.
- Classes with few training images are the least reliable; see the weakest classes below.
- Not for decisions that need certainty (allergens, prices, safety) without a human check."""


def render_model_card(
    *,
    model_name: str,
    variant: str,
    classifier: dict[str, Any],
    io_spec: dict[str, Any],
    metrics: dict[str, Any],
    per_class: pd.DataFrame,
    compression_report: dict[str, Any],
    manifest: pd.DataFrame,
    validation_report: dict[str, Any],
    lineage: dict[str, Any],
) -> str:
    """MODEL_CARD.md, rendered entirely from the values passed in."""
    sections = [
        _overview(model_name, variant, classifier, io_spec, lineage),
        _INTENDED_USE.format(
            classes=len(classifier["labels"]),
            calibration=_calibration(classifier.get("temperature")),
            ece=_fixed(metrics.get("ece")),
        ),
        _data_section(manifest, lineage),
        _metrics_section(metrics, per_class),
        _compression_section(compression_report, variant),
        _validation_section(validation_report),
        _lineage_section(lineage),
    ]
    return "\n\n".join(sections) + "\n"


def _calibration(temperature: float | None) -> str:
    if temperature is None or temperature == 1.0:
        return "Probabilities are the softmax of the logits, not recalibrated."
    return (
        f"Probabilities are the softmax of the logits divided by a temperature of "
        f"{temperature:.3f}, fitted on the val split after training (temperature scaling)."
    )


def _overview(
    model_name: str,
    variant: str,
    classifier: dict[str, Any],
    io_spec: dict[str, Any],
    lineage: dict[str, Any],
) -> str:
    labels = classifier["labels"]
    coarse = {label for label in classifier.get("coarse_labels") or [] if label}
    prep = classifier["preprocessing"]
    input_text = _named_tensor(
        io_spec["input_name"],
        f"{io_spec['input_dtype']} {_dims(io_spec['input_shape'])}: "
        f"RGB, shorter side resized to {prep['resize_size']} "
        f"({prep.get('interpolation', 'bicubic')}), centre crop {prep['input_size']}, "
        f"scaled to 0..1, mean {_floats(prep['mean'])}, std {_floats(prep['std'])}",
    )
    rows = [
        ["Registered model", model_name],
        ["Deployed variant", variant],
        ["Backbone", classifier["backbone"]],
        ["Classes", f"{len(labels)} fine, {len(coarse)} coarse"],
        ["Input", input_text],
        [
            "Output",
            _named_tensor(
                io_spec["output_name"],
                f"{io_spec['output_dtype']} {_dims(io_spec['output_shape'])}: class logits",
            ),
        ],
        ["Model file sha256", code(lineage["model_sha256"])],
    ]
    return f"# Model card: {model_name} ({variant})\n\n" + markdown_table(["Field", "Value"], rows)


def _named_tensor(name: str, description: str) -> Markdown:
    return Markdown(f"{code(name)} {escape(description)}")


def _data_section(manifest: pd.DataFrame, lineage: dict[str, Any]) -> str:
    counts = manifest.groupby("label").agg(
        coarse_label=("coarse_label", "first"), images=("sha256", "size")
    )
    rows = [
        [label, row.coarse_label or "none", _int(row.images)]
        for label, row in counts.sort_index().iterrows()
    ]
    summary = (
        f"{_int(len(manifest))} validated images in {_int(len(counts))} classes "
        f"from {_int(manifest['drop'].nunique())} drops.\n\n"
        f"- Raw drops, DVC hash: `{_text(lineage.get('raw_data_dvc_hash'))}`\n"
        f"- Validated manifest, DVC hash: `{_text(lineage.get('manifest_dvc_hash'))}`"
    )
    table = markdown_table(["Label", "Coarse label", "Images"], rows)
    return f"## Data\n\n{summary}\n\n### Images per class\n\n{table}"


def _metrics_section(metrics: dict[str, Any], per_class_table: pd.DataFrame) -> str:
    overall = [
        ["Top-1", _pct(metrics.get("top1"))],
        ["Top-5", _pct(metrics.get("top5"))],
        ["Macro F1", _fixed(metrics.get("macro_f1"))],
        ["Coarse top-1", _pct(metrics.get("coarse_top1"))],
        ["Test images", _int(metrics.get("test_images"))],
        ["Classes", _int(metrics.get("classes"))],
    ]
    per_class = per_class_table.set_index("label").to_dict("index")
    header = ["Label", "Precision", "Recall", "F1", "Support"]
    by_f1 = sorted(per_class.items(), key=lambda item: (item[1].get("f1", 0.0), item[0]))
    weakest = markdown_table(
        header, [_class_row(label, row) for label, row in by_f1[:WEAKEST_CLASSES]]
    )
    all_rows = markdown_table(
        header, [_class_row(label, row) for label, row in sorted(per_class.items())]
    )
    return (
        "## Metrics (test split)\n\n"
        + markdown_table(["Metric", "Value"], overall)
        + f"\n\n### The {WEAKEST_CLASSES} weakest classes by F1\n\n{weakest}"
        + f"\n\n### Per class\n\n{all_rows}"
    )


def _compression_section(compression_report: dict[str, Any], variant: str) -> str:
    batch_size = compression_report["benchmark_batch_size"]
    header = [
        "Variant",
        "How",
        "Size (MB)",
        "Parameters",
        "img/s, batch 1",
        f"img/s, batch {batch_size}",
        "p50 latency (ms)",
        "p95 latency (ms)",
        "Top-1",
        "Macro F1",
        "Top-1 change",
    ]
    rows = [
        [
            row["variant"] + (" (deployed)" if row["variant"] == variant else ""),
            _text(row.get("method")),
            _fixed(row.get("size_mb"), 2),
            _int(row.get("params")),
            _fixed(row.get("ips_b1"), 1),
            _fixed(row.get(compression_report["throughput_column"]), 1),
            _fixed(row.get("p50_ms"), 2),
            _fixed(row.get("p95_ms"), 2),
            _pct(row.get("top1")),
            _fixed(row.get("macro_f1")),
            _points(row.get("delta_top1")),
        ]
        for row in (compression_report.get("variants") or {}).values()
    ]
    rule = compression_report["deploy_rule"]["text"]
    return (
        "## Compression trade-off (ONNX Runtime, CPU)\n\n"
        f"{markdown_table(header, rows)}\n\nThe deployed variant is {rule}."
    )


def _validation_section(validation_report: dict[str, Any]) -> str:
    checks = validation_report.get("checks") or []
    failed = sum(not check["success"] for check in checks)
    verdict = "passed" if validation_report["success"] else "failed"
    rows = [[check["name"], "passed" if check["success"] else "failed"] for check in checks]
    return (
        f"## Data validation\n\nResult: **{verdict}** ({len(checks)} checks, {failed} failed)."
        + (f"\n\n{markdown_table(['Check', 'Result'], rows)}" if rows else "")
    )


def _lineage_section(lineage: dict[str, Any]) -> str:
    rows = [
        ["Git commit", _commit(lineage)],
        ["Uncommitted changes", "yes" if lineage.get("git_dirty") else "no"],
        ["params.yaml sha256", code(_text(lineage.get("params_hash")))],
        ["Dependency lock sha256", code(_text(lineage.get("lock_hash")))],
        ["Raw drops DVC hash", code(_text(lineage.get("raw_data_dvc_hash")))],
        ["Manifest DVC hash", code(_text(lineage.get("manifest_dvc_hash")))],
    ]
    return "## Lineage\n\n" + markdown_table(["Field", "Value"], rows)


def _class_row(label: str, row: dict[str, Any]) -> list[str]:
    return [
        label,
        _fixed(row.get("precision")),
        _fixed(row.get("recall")),
        _fixed(row.get("f1")),
        _int(row.get("support")),
    ]


def _commit(lineage: dict[str, Any]) -> str:
    if lineage.get("git_commit"):
        return code(lineage["git_commit"])
    reason = "no commit yet" if lineage.get("git_repo") else "not a git repository"
    return f"not recorded ({reason})"


def _pct(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{100 * value:.2f} %"


def _points(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{100 * value:+.2f} points"


def _fixed(value: float | None, digits: int = 3) -> str:
    return NOT_MEASURED if value is None else f"{value:.{digits}f}"


def _int(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{int(value):,}"


def _text(value: str | None) -> str:
    return value or NOT_MEASURED


def _floats(values: list[float]) -> str:
    return "(" + ", ".join(f"{value:g}" for value in values) + ")"


def _dims(shape: list[int | str]) -> str:
    return "[" + ", ".join(str(dim) for dim in shape) + "]"
