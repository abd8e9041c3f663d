"""The model package: right files, real numbers in the card, nothing left as a placeholder.

`tiny_onnx` and `package_inputs` are reused by test_package_pipeline.py.
"""

import io
import json
import re
import warnings
from functools import cache
from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn

from prodcls_pipeline.release.package import (
    LINEAGE_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    NOT_MEASURED,
    TAG_KEYS,
    build_package,
    version_tags,
)

LABELS = ["apple", "banana", "carrot", "leek", "milk", "pear", "yoghurt"]
COARSE = ["fruit", "fruit", "vegetable", "vegetable", "", "fruit", "dairy"]
F1 = [0.91, 0.42, 0.77, 0.35, 0.88, 0.61, 0.55]
IMAGE_SIZE = 8
LINEAGE = {
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "git_dirty": False,
    "git_repo": True,
    "raw_data_dvc_hash": "3eae53a54a594a6b50e69c2176c3a3d1.dir",
    "manifest_dvc_hash": "9b2f0a4b3c1d2e3f4a5b6c7d8e9f0a1b",
    "params_hash": "a" * 64,
    "lock_hash": "b" * 64,
}


@cache
def tiny_onnx(seed: int, classes: int = len(LABELS)) -> bytes:
    """A real two-layer classifier exported like the compress stage does: images → logits."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes)
    ).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but is the one that needs no onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(model, buffer)
    return buffer.getvalue()


def _export(model: nn.Module, buffer: io.BytesIO) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),),
        buffer,
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )


def package_inputs() -> dict[str, Any]:
    """Stage outputs as the upstream stages write them, for a 7-class model."""
    per_class = {
        label: {"precision": f1 + 0.02, "recall": f1 - 0.02, "f1": f1, "support": 10 + index}
        for index, (label, f1) in enumerate(zip(LABELS, F1, strict=True))
    }
    manifest = pd.DataFrame(
        [
            {
                "sha256": f"{label}-{image:02d}",
                "drop": f"drop-{image % 2}",
                "label": label,
                "coarse_label": coarse,
                "status": "ok",
            }
            for label, coarse, count in zip(LABELS, COARSE, range(12, 19), strict=True)
            for image in range(count)
        ]
    )
    variant_row = {"params": 5_123, "ips_b1": 230.4, "ips_b32": 410.9, "p50_ms": 4.35}
    return {
        "onnx_models": {"fp32": tiny_onnx(seed=0), "int8": tiny_onnx(seed=1)},
        "classifier": {
            "backbone": "efficientnet_lite0",
            "labels": LABELS,
            "coarse_labels": COARSE,
            "preprocessing": {
                "input_size": IMAGE_SIZE,
                "resize_size": 10,
                "mean": [0.5, 0.5, 0.5],
                "std": [0.5, 0.5, 0.5],
                "interpolation": "bicubic",
            },
            "head": {"weight": torch.zeros(len(LABELS), 4), "bias": torch.zeros(len(LABELS))},
            "temperature": 0.6183,
        },
        "metrics": {
            "top1": 0.8125,
            "top5": 0.9731,
            "macro_f1": 0.6414,
            "coarse_top1": 0.8842,
            "ece": 0.0712,
            "test_images": 91,
            "classes": len(LABELS),
        },
        "classification_report": pd.DataFrame(
            [{"label": label, **values} for label, values in per_class.items()]
        ),
        "compression_report": {
            "benchmark_batch_size": 32,
            "throughput_column": "ips_b32",
            "deployable": "int8",
            "deploy_rule": {"text": "the highest ips_b32 within 0.0100 top-1 of fp32"},
            "variants": {
                "fp32": {
                    **variant_row,
                    "variant": "fp32",
                    "method": "exported as is",
                    "size_mb": 13.42,
                    "p95_ms": 6.1,
                    "top1": 0.8125,
                    "macro_f1": 0.6414,
                    "delta_top1": 0.0,
                },
                "int8": {
                    **variant_row,
                    "variant": "int8",
                    "method": "static int8",
                    "size_mb": 3.61,
                    "p95_ms": None,
                    "top1": 0.8081,
                    "macro_f1": 0.6377,
                    "delta_top1": -0.0044,
                },
            },
        },
        "validated_manifest": manifest,
        "validation_report": {
            "success": True,
            "checks": [
                {"name": "images_per_class", "success": True},
                {"name": "quarantine_fraction", "success": True},
            ],
        },
    }


def build_test_package(
    variant: str = "int8", model_name: str = "prodcls", **overrides: Any
) -> dict[str, bytes]:
    inputs = {**package_inputs(), **overrides}
    return build_package(
        onnx_models=inputs["onnx_models"],
        model_name=model_name,
        classifier=inputs["classifier"],
        metrics=inputs["metrics"],
        per_class=inputs["classification_report"],
        compression_report={**inputs["compression_report"], "deployable": variant},
        manifest=inputs["validated_manifest"],
        validation_report=inputs["validation_report"],
        lineage=LINEAGE,
    )


@pytest.fixture(scope="module")
def package() -> dict[str, bytes]:
    return build_test_package()


@pytest.fixture(scope="module")
def card(package: dict[str, bytes]) -> str:
    return package[MODEL_CARD_FILE].decode("utf-8")


def test_package_holds_the_deployed_variant_and_its_interface(package: dict[str, bytes]) -> None:
    assert set(package) == {
        "model.onnx",
        "label_map.json",
        "preprocessing.json",
        "MODEL_CARD.md",
        "lineage.json",
    }
    assert package[MODEL_FILE] == package_inputs()["onnx_models"]["int8"]
    assert build_test_package("fp32")[MODEL_FILE] == package_inputs()["onnx_models"]["fp32"]

    label_map = json.loads(package["label_map.json"])
    assert label_map["index_to_label"]["1"] == "banana"
    assert label_map["label_to_coarse"]["milk"] == ""
    preprocessing = json.loads(package["preprocessing.json"])
    assert preprocessing["input_name"] == "images"
    assert preprocessing["input_shape"] == ["batch", 3, IMAGE_SIZE, IMAGE_SIZE]
    assert preprocessing["output_name"] == "logits"
    assert preprocessing["input_dtype"] == preprocessing["output_dtype"] == "float32"
    assert preprocessing["output_shape"] == ["batch", len(LABELS)]
    assert preprocessing["resize"] == {"shorter_side": 10, "interpolation": "bicubic"}
    assert preprocessing["center_crop"] == IMAGE_SIZE


def test_lineage_and_tags(package: dict[str, bytes]) -> None:
    lineage = json.loads(package[LINEAGE_FILE])
    assert lineage["variant"] == "int8"
    assert lineage["validation_success"] is True
    assert lineage["test_top1"] == 0.8125
    assert lineage["params_hash"] == "a" * 64
    tags = version_tags(lineage)
    assert set(tags) == set(TAG_KEYS)
    assert tags["git_dirty"] == "false"
    assert tags["validation_success"] == "true"
    assert tags["test_top1"] == "0.8125"
    assert tags["raw_data_dvc_hash"] == LINEAGE["raw_data_dvc_hash"]


def test_model_card_has_no_placeholders(card: str) -> None:
    for leftover in ("TODO", "TBD", "{", "}", "<", ">"):
        assert leftover not in card
    assert not re.search(r"\b(None|nan|NaN|null)\b", card)


def test_model_card_shows_the_real_values(card: str) -> None:
    assert card.startswith("# Model card: prodcls (int8)")
    assert "efficientnet_lite0" in card
    for value in ("81.25 %", "97.31 %", "0.641", "88.42 %", "| Test images | 91 |"):
        assert value in card
    assert "105 validated images in 7 classes from 2 drops." in card
    assert "| yoghurt | dairy | 18 |" in card
    assert "| milk | none | 16 |" in card
    for value in LINEAGE.values():
        if isinstance(value, str):
            assert value in card
    assert "| Uncommitted changes | no |" in card
    assert "Result: **passed** (2 checks, 0 failed)." in card
    assert "| int8 (deployed) | static int8 | 3.61 | 5,123 | 230.4 | 410.9 | 4.35 |" in card
    assert "-0.44 points" in card
    assert "The deployed variant is the highest ips_b32 within 0.0100 top-1 of fp32." in card
    words = " ".join(card.split())
    assert "divided by a temperature of 0.618, fitted on the val split" in words
    assert "expected calibration error on the test split is 0.071" in words


def test_model_card_lists_the_five_weakest_classes_by_f1(card: str) -> None:
    weakest = card.split("weakest classes by F1")[1].split("###", maxsplit=1)[0]
    assert re.findall(r"^\| (\w+) \| 0", weakest, flags=re.MULTILINE) == [
        "leek",
        "banana",
        "yoghurt",
        "pear",
        "carrot",
    ]


def test_missing_values_read_not_measured(card: str) -> None:
    row = "| int8 (deployed) | static int8 | 3.61 | 5,123 | 230.4 | 410.9 | 4.35 |"
    assert f"{row} {NOT_MEASURED} |" in card
    metrics = {**package_inputs()["metrics"], "coarse_top1": None, "ece": None}
    sparse = build_test_package(metrics=metrics)[MODEL_CARD_FILE].decode()
    assert f"| Coarse top-1 | {NOT_MEASURED} |" in sparse
    assert f"calibration error on the test split is {NOT_MEASURED}" in " ".join(sparse.split())
    assert "None" not in sparse
    uncalibrated = {**package_inputs()["classifier"]}
    del uncalibrated["temperature"]
    plain = build_test_package(classifier=uncalibrated)[MODEL_CARD_FILE].decode()
    assert "softmax of the logits, not recalibrated" in " ".join(plain.split())


def test_failed_validation_is_stated() -> None:
    report = {"success": False, "checks": [{"name": "images_per_class", "success": False}]}
    card = build_test_package(validation_report=report)[MODEL_CARD_FILE].decode()
    assert "Result: **failed** (1 checks, 1 failed)." in card
    assert "| images_per_class | failed |" in card


def test_rejects_a_variant_not_exported_and_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="deploys 'channels-25', but .* only fp32, int8"):
        build_test_package("channels-25")
    with pytest.raises(ValueError, match="3 classes"):
        build_test_package(onnx_models={"int8": tiny_onnx(seed=2, classes=3)})
