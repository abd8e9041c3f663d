"""The compress stage end to end on a fake image store: export, quantise, prune, distil,
compare, and pick the variant to deploy."""

from pathlib import Path

import pandas as pd
import yaml
from helpers import CLASSES, REPO, FakeImageStore, lite0_checkpoint, synthetic_images
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from prodcls_pipeline.framework.datasets import AtomicJSONDataset
from prodcls_pipeline.framework.params import CompressParams, TrainParams
from prodcls_pipeline.pipelines.compress import create_pipeline

PARAMS = {
    "calibration_images": 4,
    "benchmark_images": 3,
    "benchmark_batch_size": 2,
    "benchmark_repeats": 2,
    "fine_tune_images": 4,
    "fine_tune_batch_size": 2,
    "pruning": {
        "unstructured_sparsities": [0.5],
        "channel_fractions": [0.25],
        "recovery_epochs": 1,
        "recovery_learning_rate": 0.0005,
    },
    "distillation": {
        "enabled": True,
        "student_channel_fraction": 0.5,
        "epochs": 1,
        "learning_rate": 0.0005,
        "temperature": 4.0,
        "alpha": 0.7,
    },
    "deploy_rule": {"max_top1_drop": 1.0, "speed": "ips_b2"},
}
TRAIN_PARAMS = {"mode": "head", "partial_block": 5}
VARIANTS = {"fp32", "int8", "unstructured-50", "channels-25", "distilled-channels-50"}
SPLITS = ["train"] * 6 + ["val"] * 2 + ["test"] * 5


def splits(store: FakeImageStore) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sha256": list(store.images),
            "label": [f"class_{index % CLASSES}" for index in range(len(SPLITS))],
            "coarse_label": "all",
            "split": SPLITS,
        }
    )


def train_params() -> TrainParams:
    """params.yaml's train section in the mode and partial block this test compresses."""
    train = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    return TrainParams.model_validate({**train, **TRAIN_PARAMS})


def catalog(report: Path, params: dict = PARAMS) -> DataCatalog:
    store = FakeImageStore(synthetic_images(len(SPLITS), seed=3))
    return DataCatalog(
        datasets={
            "classifier": MemoryDataset(lite0_checkpoint()),
            "splits": MemoryDataset(splits(store)),
            "image_store": MemoryDataset(store, copy_mode="assign"),
            "params:compress": MemoryDataset(CompressParams.model_validate(params)),
            "params:train": MemoryDataset(train_params()),
            "params:seed": MemoryDataset(42),
            "onnx_models": MemoryDataset(),
            "compression_report": AtomicJSONDataset(filepath=str(report)),
            "compression_report_markdown": MemoryDataset(),
        }
    )


def test_compress_pipeline_reports_every_variant(tmp_path: Path) -> None:
    data = catalog(tmp_path / "compression_report.json")
    SequentialRunner().run(create_pipeline(), data)
    report = data.load("compression_report")

    assert report["test_images"] == SPLITS.count("test")
    assert report["benchmark_images"] == PARAMS["benchmark_images"]
    assert report["cpu_cores"] >= 1 and report["onnxruntime_version"]
    variants = report["variants"]
    assert set(variants) == VARIANTS == set(data.load("onnx_models"))
    fp32, int8 = variants["fp32"], variants["int8"]
    assert fp32["size_mb"] / int8["size_mb"] > 3.3
    assert fp32["params"] == int8["params"]
    assert variants["unstructured-50"]["params"] == fp32["params"]
    assert variants["unstructured-50"]["nonzero_params"] < 0.6 * fp32["nonzero_params"]
    assert variants["channels-25"]["params"] < fp32["params"]
    assert variants["distilled-channels-50"]["params"] < variants["channels-25"]["params"]
    for variant in variants.values():
        assert variant["method"]
        assert 0 <= variant["top1"] <= 1 and 0 <= variant["macro_f1"] <= 1
        assert variant["ips_b1"] > 0 and variant["ips_b2"] > 0
        assert 0 < variant["p50_ms"] <= variant["p95_ms"]
        assert variant["delta_top1"] == round(variant["top1"] - fp32["top1"], 4)
    assert fp32["delta_top1"] == 0 and fp32["agreement_with_fp32"] == 1
    fastest = max(variants, key=lambda name: variants[name]["ips_b2"])
    assert report["deployable"] == fastest
    markdown = data.load("compression_report_markdown")
    assert f"| **{fastest}** (deployed) |" in markdown
    assert report["unquantized_nodes"] == {"int8": [{"name": "/head/Gemm", "op_type": "Gemm"}]}
    assert "Left in float in int8, after its last dequantisation: `/head/Gemm` (Gemm)." in markdown


def test_an_accuracy_budget_of_zero_keeps_only_variants_as_good_as_fp32(tmp_path: Path) -> None:
    params = {
        **PARAMS,
        "pruning": {**PARAMS["pruning"], "unstructured_sparsities": [], "channel_fractions": []},
        "distillation": {**PARAMS["distillation"], "enabled": False},
        "deploy_rule": {"max_top1_drop": 0.0, "speed": "ips_b2"},
    }
    data = catalog(tmp_path / "compression_report.json", params)
    SequentialRunner().run(create_pipeline(), data)
    report = data.load("compression_report")

    assert set(report["variants"]) == {"fp32", "int8"}
    eligible = [name for name, row in report["variants"].items() if row["delta_top1"] >= 0]
    assert report["deployable"] in eligible
