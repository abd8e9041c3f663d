"""The compress stage end to end on a fake image store: export, quantise, compare."""

import hashlib
from pathlib import Path

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from PIL import Image
from test_export import CLASSES, lite0_checkpoint, synthetic_images

from prodcls_pipeline.pipelines.compress import create_pipeline

PARAMS = {
    "calibration_images": 4,
    "benchmark_images": 3,
    "benchmark_batch_size": 2,
    "benchmark_repeats": 2,
}
SPLITS = ["train"] * 6 + ["val"] * 2 + ["test"] * 5


class FakeImageStore:
    """Synthetic RGB images keyed by sha256, like `images.ImageStore`."""

    def __init__(self, images: list[Image.Image]) -> None:
        self.images = {hashlib.sha256(image.tobytes()).hexdigest(): image for image in images}

    def open(self, sha256: str) -> Image.Image:
        return self.images[sha256].copy()


def splits(store: FakeImageStore) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sha256": list(store.images),
            "label": [f"class_{index % CLASSES}" for index in range(len(SPLITS))],
            "coarse_label": "all",
            "split": SPLITS,
        }
    )


def catalog(report: Path) -> DataCatalog:
    store = FakeImageStore(synthetic_images(len(SPLITS), seed=3))
    return DataCatalog(
        datasets={
            "classifier": MemoryDataset(lite0_checkpoint()),
            "splits": MemoryDataset(splits(store)),
            "image_store": MemoryDataset(store, copy_mode="assign"),
            "params:compress": MemoryDataset(PARAMS),
            "params:seed": MemoryDataset(42),
            "onnx_fp32": MemoryDataset(),
            "onnx_int8": MemoryDataset(),
            "compression_report": JSONDataset(filepath=str(report)),
        }
    )


def test_compress_pipeline_reports_both_variants(tmp_path: Path) -> None:
    data = catalog(tmp_path / "compression_report.json")
    SequentialRunner().run(create_pipeline(), data)
    report = data.load("compression_report")

    assert report["test_images"] == SPLITS.count("test")
    assert report["benchmark_images"] == PARAMS["benchmark_images"]
    assert report["cpu_cores"] >= 1 and report["onnxruntime_version"]
    fp32, int8 = report["variants"]["fp32"], report["variants"]["int8"]
    assert (fp32["variant"], int8["variant"]) == ("fp32", "int8")
    assert fp32["size_mb"] / int8["size_mb"] > 3.3
    assert fp32["params"] == int8["params"]
    for variant in (fp32, int8):
        assert 0 <= variant["top1"] <= 1 and 0 <= variant["macro_f1"] <= 1
        assert variant["ips_b1"] > 0 and variant["ips_batch"] > 0
        assert 0 < variant["p50_ms"] <= variant["p95_ms"]
    assert fp32["delta_top1"] == 0 and fp32["agreement_with_fp32"] == 1
    assert int8["delta_top1"] == round(int8["top1"] - fp32["top1"], 4)
    assert int8["agreement_with_fp32"] >= 0.6
