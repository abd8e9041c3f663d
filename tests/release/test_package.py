"""The model package: right files, real numbers in the card, nothing left as a placeholder."""

import json
import re

import pytest
from helpers import (
    LINEAGE,
    PACKAGE_IMAGE_SIZE,
    PACKAGE_LABELS,
    build_test_package,
    package_inputs,
    tiny_onnx,
)

from prodcls_pipeline.release.package import (
    LINEAGE_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    NOT_MEASURED,
    TAG_KEYS,
    version_tags,
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
    assert preprocessing["input_shape"] == ["batch", 3, PACKAGE_IMAGE_SIZE, PACKAGE_IMAGE_SIZE]
    assert preprocessing["output_name"] == "logits"
    assert preprocessing["input_dtype"] == preprocessing["output_dtype"] == "float32"
    assert preprocessing["output_shape"] == ["batch", len(PACKAGE_LABELS)]
    assert preprocessing["resize"] == {"shorter_side": 10, "interpolation": "bicubic"}
    assert preprocessing["center_crop"] == PACKAGE_IMAGE_SIZE


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


def test_a_label_holding_markdown_or_html_appears_literally_in_the_card() -> None:
    manifest = package_inputs()["validated_manifest"].copy()
    manifest.loc[0, "label"] = "<script>alert(1)</script>|*x*"

    card = build_test_package(validated_manifest=manifest)[MODEL_CARD_FILE].decode("utf-8")

    assert "\n| &lt;script&gt;alert(1)&lt;/script&gt;\\|\\*x\\* | " in card
    assert "<script>" not in card
