"""Helpers shared by the test modules (no test module imports another).

- The project's own import graph, read from the source with `ast`, for the architecture tests.
- A tiny real model package, logged as the pyfunc model and registered as the champion, for the
  serving, CLI and HTTP tests. The classifier scores each colour channel, so a solid colour has a
  known label, and it is exported with the project's own ONNX exporter.
"""

import ast
import dataclasses
import hashlib
import io
import json
import os
import socket
import struct
import subprocess
import sys
import unicodedata
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import mlflow
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from kedro.io import DataCatalog, MemoryDataset
from mlflow import MlflowClient
from nbclient import NotebookClient
from PIL import Image, ImageFile
from torch import nn

from benchmarks.common import copy_project_files
from prodcls_pipeline.core.tracking import (
    TRACKING_URI_ENV,
    reset_tracking,
    sqlite_tracking_uri,
    use_project_tracking,
)
from prodcls_pipeline.data.images import IngestSettings
from prodcls_pipeline.framework.datasets import AtomicJSONDataset, AtomicTextDataset
from prodcls_pipeline.framework.params import SplitParams, TrainParams, ValidateParams
from prodcls_pipeline.models.backbones import BACKBONES
from prodcls_pipeline.models.onnx_export import export_onnx
from prodcls_pipeline.release.package import (
    LABEL_MAP_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    build_package,
    label_map,
    onnx_io,
    preprocessing_spec,
)
from prodcls_pipeline.training.embedding_cache import EmbeddingStore
from prodcls_pipeline.training.loop import AdversarialConfig, TrainingConfig
from prodcls_pipeline.validation.review import REVIEW_HEADER
from prodcls_serving.model import log_pyfunc_model

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
SAMPLE_DIR = REPO / "sample" / "grocery-store-mini"
PROJECT_PACKAGES = ("prodcls_pipeline", "prodcls_serving")
LABELS = ["red", "green", "blue"]
COARSE_LABELS = ["warm", "cool", "cool"]
INPUT_SIZE = 32
PREPROCESSING = {
    "input_size": INPUT_SIZE,
    "resize_size": 36,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
}
MODEL_NAME = "prodcls-test"
CHAMPION_URI = f"models:/{MODEL_NAME}@champion"


def project_params() -> dict[str, Any]:
    """The repository's params.yaml."""
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


# Ingest of small synthetic photos: tiny copies, small limits, any size accepted.
SMALL_INGEST = IngestSettings(
    max_side=32,
    normalised_quality=90,
    max_source_bytes=100_000,
    max_source_pixels=1_000_000,
    max_aspect_ratio=20,
    min_source_side=1,
)


def validate_catalog(
    manifest: Any,
    folder: Path,
    store: Any,
    params: ValidateParams,
    decisions: str = REVIEW_HEADER + "\n",
) -> DataCatalog:
    """The validate stage's inputs (no earlier validated manifest) and its reports as files, as
    in production: the runner frees consumed MemoryDatasets."""
    project = project_params()
    return DataCatalog(
        datasets={
            "manifest": MemoryDataset(manifest),
            "review_decisions": MemoryDataset(decisions),
            "previous_validated_manifest": MemoryDataset(pd.DataFrame()),
            "image_store": MemoryDataset(store, copy_mode="assign"),
            "validation_embeddings": MemoryDataset(
                EmbeddingStore(folder / "embeddings"), copy_mode="assign"
            ),
            "params:validate": MemoryDataset(params),
            "params:split": MemoryDataset(SplitParams.model_validate(project["split"])),
            "params:train": MemoryDataset(TrainParams.model_validate(project["train"])),
            "params:seed": MemoryDataset(project["seed"]),
            "validation_report": AtomicJSONDataset(filepath=str(folder / "report.json")),
            "validation_report_markdown": AtomicTextDataset(filepath=str(folder / "report.md")),
            "label_review": AtomicTextDataset(filepath=str(folder / "review.html")),
            "validated_manifest": MemoryDataset(),
        }
    )


# The test packages hold served images to the project's own ingest limits but the smallest
# side: their synthetic photos are a few pixels across (tests/serving/test_decoding.py checks
# that rule).
PACKAGE_LIMITS = dataclasses.replace(
    IngestSettings.from_params(project_params()["ingest"]).limits, min_side=1
)


def colour_classifier() -> nn.Module:
    """Logit of class c = 4 × the mean of channel c: red, green and blue images are told apart."""
    linear = nn.Linear(3, len(LABELS))
    with torch.no_grad():
        linear.weight.copy_(4 * torch.eye(3))
        linear.bias.zero_()
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)


def write_package(directory: Path) -> Path:
    """The serving files of a package, written as the package stage writes them."""
    model = export_onnx(colour_classifier(), INPUT_SIZE)
    classifier = {"labels": LABELS, "coarse_labels": COARSE_LABELS}
    files = {
        MODEL_FILE: model,
        LABEL_MAP_FILE: json.dumps(label_map(classifier)).encode(),
        PREPROCESSING_FILE: json.dumps(
            preprocessing_spec(PREPROCESSING, onnx_io(model), PACKAGE_LIMITS)
        ).encode(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def sample_images(count: int) -> list[Path]:
    """The first `count` real photos of the bundled sample, in a stable order."""
    return sorted(SAMPLE_DIR.rglob("*.jpg"))[:count]


def declared_png(width: int, height: int, complete: bool = False) -> bytes:
    """A black greyscale PNG whose header declares `width`×`height` pixels. Its pixel data is
    one row (a few hundred bytes in all), or every row when `complete` (still only tens of KB,
    while decoding it allocates the whole image)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + width) * (height if complete else 1), level=9)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        _png_chunk(kind, data)
        for kind, data in ((b"IHDR", header), (b"IDAT", rows), (b"IEND", b""))
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def forbid_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding the pixels of any image fails the test from now on: only headers may be read.

    Every pixel access, conversion or resize of a file-backed image goes through `load`.
    """

    def refuse(image: Image.Image, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"decoded the pixels of a {image.size[0]}×{image.size[1]} image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(Image.Image, "load", refuse)


@contextmanager
def champion_registry(root: Path) -> Iterator[str]:
    """A sqlite store under `root` where MODEL_NAME@champion is the pyfunc model of a fresh
    package; yields its tracking URI, which is MLflow's (and $MLFLOW_TRACKING_URI) until exit.

    Logging and registering fail the test if they open any network connection.
    """
    uri = sqlite_tracking_uri(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TRACKING_URI_ENV, uri)
        with pytest.MonkeyPatch.context() as offline:
            offline.setattr(socket.socket, "connect", _refuse_connection)
            use_project_tracking("prodcls-serving-test", project_root=root)
            with mlflow.start_run():
                info = log_pyfunc_model(
                    write_package(root / "package"),
                    name="model",
                    input_example_images=[path.read_bytes() for path in sample_images(1)],
                )
            version = mlflow.register_model(info.model_uri, MODEL_NAME)
            MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", version.version)
        try:
            yield uri
        finally:
            # Later tests must not inherit this store through MLflow's global tracking URI.
            reset_tracking()


def _refuse_connection(self: socket.socket, address: Any) -> None:
    raise AssertionError(f"network access attempted: {address}")


def module_file(module: str) -> Path:
    """The source file of a project module (a package's `__init__.py`)."""
    path = SRC.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def is_project_module(name: str) -> bool:
    return name.split(".", maxsplit=1)[0] in PROJECT_PACKAGES and module_file(name).is_file()


def imported_modules(module: str) -> dict[str, int]:
    """Every project module `module` imports, at any depth of its code, with the line of the
    first import; `from package import name` counts as the submodule `name` when it is one."""
    source = module_file(module)
    package = module if source.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if is_project_module(target):
                found.setdefault(target, node.lineno)
    return found


def import_closure(roots: list[str]) -> set[str]:
    """The modules `roots` import, transitively, with every package `__init__` on the way."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        parents = [".".join(parts[:depth]) for depth in range(1, len(parts))]
        pending.extend(parent for parent in parents if is_project_module(parent))
        pending.extend(imported_modules(module))
    return seen


def project_modules() -> list[str]:
    """Every module of the project's packages, by dotted name."""
    modules = []
    for package in PROJECT_PACKAGES:
        for path in sorted((SRC / package).rglob("*.py")):
            parts = path.relative_to(SRC).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def command_env() -> dict[str, str]:
    """The environment a project command runs in: this venv first, offline, no outside MLflow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return env | {
        "KEDRO_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    }


def run(
    project: Path, *command: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`command` in `project`, in `command_env()` plus `env`."""
    result = subprocess.run(
        command,
        check=False,
        cwd=project,
        env={**command_env(), **(env or {})},
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, nested mappings key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = merge(base[key], value) if nested else value
    return merged


def copy_project(root: Path, params_overrides: dict[str, Any] | None = None) -> Path:
    """A git-committed copy of the project at `root`, without data, for `dvc repro` runs."""
    # The bundled sample too: tests land it, or drops made from it.
    copy_project_files(root, extra=["sample"])
    params_file = root / "params.yaml"
    params = merge(yaml.safe_load(params_file.read_text()), params_overrides or {})
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    run(root, "git", "init", "-q")
    run(root, "git", "add", "-A")
    run(
        root,
        "git",
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.com",
        "commit",
        "-qm",
        "copy",
    )
    return root


CONFIG = TrainingConfig(
    batch_size=16,
    max_epochs=12,
    optimizer="adamw",
    learning_rate=0.01,
    backbone_learning_rate=0.001,
    momentum=0.9,
    nesterov=True,
    weight_decay=0.0,
    schedule="cosine",
    warmup_epochs=1,
    step_size=10,
    step_gamma=0.1,
    dropout=0.1,
    loss="ce",
    focal_gamma=2.0,
    label_smoothing=0.0,
    class_balance="weights",
    gradient_clip_norm=0.0,
    early_stopping_metric="val_accuracy",
    early_stopping_patience=5,
    restore_best=True,
    temperature_scaling=False,
    resume=True,
    device="cpu",
    adversarial=AdversarialConfig(False, "fgsm", 0.01, 2, 0.005, 0.5),
)


CLASSES = 4
# The Lite0 fixtures: bundled photos, the first ones calibrating int8.
LITE0_PHOTOS = 24
LITE0_CALIBRATION = 8


class FakeImageStore:
    """Images keyed by sha256, like `images.ImageStore`: by their pixels' hash, or as given."""

    def __init__(self, images: list[Image.Image] | dict[str, Image.Image]) -> None:
        if isinstance(images, dict):
            self.images = dict(images)
        else:
            self.images = {hashlib.sha256(image.tobytes()).hexdigest(): image for image in images}

    def open(self, sha256: str) -> Image.Image:
        return self.images[sha256].copy()


def synthetic_images(count: int, seed: int) -> list[Image.Image]:
    """Smooth colour fields: low-resolution noise upscaled, so features are stable under int8."""
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
            (320, 240), Image.Resampling.BICUBIC
        )
        for _ in range(count)
    ]


def lite0_checkpoint(classes: int = CLASSES) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "backbone": "efficientnet_lite0",
        "labels": [f"class_{index}" for index in range(classes)],
        "coarse_labels": ["all"],
        "preprocessing": BACKBONES["efficientnet_lite0"].preprocessing.to_dict(),
        "head": {
            "weight": torch.randn(classes, 1280, generator=generator) * 0.1,
            "bias": torch.zeros(classes),
        },
    }


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def row(drop: str, label: str, name: str, **overrides) -> dict:
    values = {
        "sha256": sha(name),
        "drop": drop,
        "source_path": f"{drop}/{label}/{name}.jpg",
        "label": label,
        "coarse_label": "",
        "pinned_split": "",
        "width": 640,
        "height": 480,
        "format": "JPEG",
        "bytes": 1000,
        "status": "ok",
        "quarantine_reason": "",
        "given_label": "",
        "given_coarse_label": "",
    }
    return values | overrides


PACKAGE_LABELS = ["apple", "banana", "carrot", "leek", "milk", "pear", "yoghurt"]


PACKAGE_COARSE = ["fruit", "fruit", "vegetable", "vegetable", "", "fruit", "dairy"]


PACKAGE_F1 = [0.91, 0.42, 0.77, 0.35, 0.88, 0.61, 0.55]


PACKAGE_IMAGE_SIZE = 8


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
def tiny_onnx(seed: int, classes: int = len(PACKAGE_LABELS)) -> bytes:
    """A real two-layer classifier exported like the compress stage does: images → logits."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes)
    ).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but is the one that needs no onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        _export_tiny(model, buffer)
    return buffer.getvalue()


def _export_tiny(model: nn.Module, buffer: io.BytesIO) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, PACKAGE_IMAGE_SIZE, PACKAGE_IMAGE_SIZE),),
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
        for index, (label, f1) in enumerate(zip(PACKAGE_LABELS, PACKAGE_F1, strict=True))
    }
    manifest = pd.DataFrame(
        [
            {
                "sha256": f"{label}-{image:02d}",
                "drop": f"drop-{image % 2}",
                "source_path": f"drop-{image % 2}/{label}/{image:02d}.jpg",
                "label": label,
                "coarse_label": coarse,
                "status": "ok",
            }
            for label, coarse, count in zip(
                PACKAGE_LABELS, PACKAGE_COARSE, range(12, 19), strict=True
            )
            for image in range(count)
        ]
    )
    variant_row = {"params": 5_123, "ips_b1": 230.4, "ips_b32": 410.9, "p50_ms": 4.35}
    return {
        "onnx_models": {"fp32": tiny_onnx(seed=0), "int8": tiny_onnx(seed=1)},
        "classifier": {
            "backbone": "efficientnet_lite0",
            "labels": PACKAGE_LABELS,
            "coarse_labels": PACKAGE_COARSE,
            "preprocessing": {
                "input_size": PACKAGE_IMAGE_SIZE,
                "resize_size": 10,
                "mean": [0.5, 0.5, 0.5],
                "std": [0.5, 0.5, 0.5],
                "interpolation": "bicubic",
            },
            "head": {
                "weight": torch.zeros(len(PACKAGE_LABELS), 4),
                "bias": torch.zeros(len(PACKAGE_LABELS)),
            },
            "temperature": 0.6183,
        },
        "metrics": {
            "top1": 0.8125,
            "top5": 0.9731,
            "macro_f1": 0.6414,
            "coarse_top1": 0.8842,
            "ece": 0.0712,
            "test_images": 91,
            "classes": len(PACKAGE_LABELS),
        },
        "classification_report": pd.DataFrame(
            [{"label": label, **values} for label, values in per_class.items()]
        ),
        "per_class_metrics": per_class,
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
        image_limits=PACKAGE_LIMITS,
    )


def execute_notebook(path: Path, cwd: Path, timeout_s: int = 600) -> nbformat.NotebookNode:
    """Run every cell of the notebook at `path` in a new kernel started in `cwd`, each cell
    within `timeout_s`; the executed notebook. A failing cell raises nbclient's
    CellExecutionError, which carries the cell's source and traceback."""
    notebook = nbformat.read(path, as_version=4)
    # No kernelspec folders: only the python3 kernel ipykernel describes for this interpreter,
    # so the kernel imports this environment's prodcls whatever python3 kernelspec the machine
    # has elsewhere ($JUPYTER_PATH, ~/.local/share/jupyter).
    kernel = AsyncKernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[])
    )
    client = NotebookClient(
        notebook, km=kernel, timeout=timeout_s, resources={"metadata": {"path": str(cwd)}}
    )
    # The environment `run` gives the project's commands: the project's own MLflow store,
    # whatever $MLFLOW_* the test process has.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"KEDRO_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false"}
    # nbclient leaves a kernel it was handed running unless told to shut it down.
    return client.execute(env=env, cleanup_kc=True)


def awkward_files(folder: Path) -> dict[str, str]:
    """One file of every awkward kind, written into `folder`; {name: the expected outcome}: a
    format that decodes is normalised (`ok FORMAT WxH`), anything else quarantined with the
    start of its reason."""
    folder.mkdir(parents=True)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8))
    jpeg = io.BytesIO()
    photo.save(jpeg, "JPEG")
    rotated = Image.Exif()
    rotated[0x0112] = 6  # EXIF orientation: rotate 90° clockwise to show upright
    writers = {
        "zero.jpg": lambda path: path.write_bytes(b""),
        "truncated.jpg": lambda path: path.write_bytes(
            jpeg.getvalue()[: len(jpeg.getvalue()) // 2]
        ),
        "text.jpg": lambda path: path.write_text("just some notes"),
        "page.jpg": lambda path: path.write_text("<html><body>not a photo</body></html>"),
        "alpha.png": lambda path: photo.convert("RGBA").save(path),
        "sixteen.png": lambda path: Image.fromarray(np.full((120, 160), 40000, np.uint16)).save(
            path
        ),
        "palette.png": lambda path: photo.convert("P").save(path),
        "cmyk.jpg": lambda path: photo.convert("CMYK").save(path),
        "gray.jpg": lambda path: photo.convert("L").save(path),
        "animated.gif": lambda path: photo.save(
            path, save_all=True, append_images=[photo.rotate(90)]
        ),
        "photo.webp": photo.save,
        "photo.tiff": photo.save,
        "photo.bmp": photo.save,
        "rotated.jpg": lambda path: photo.save(path, exif=rotated),
        "bomb.png": lambda path: path.write_bytes(declared_png(30_000, 30_000)),
        "wide.png": lambda path: Image.new("RGB", (4200, 200)).save(path),
        "dot.png": lambda path: Image.new("RGB", (1, 1)).save(path),
        "name with spaces.jpg": photo.save,
        unicodedata.normalize("NFD", "café.jpg"): photo.save,
        unicodedata.normalize("NFC", "crème brûlée.jpg"): photo.save,
    }
    for name, write in writers.items():
        write(folder / name)
    return {
        "zero.jpg": "quarantined empty file",
        "truncated.jpg": "quarantined truncated or corrupt image data",
        "text.jpg": "quarantined not a decodable image",
        "page.jpg": "quarantined not a decodable image",
        "alpha.png": "ok PNG 160x120",
        "sixteen.png": "ok PNG 160x120",
        "palette.png": "ok PNG 160x120",
        "cmyk.jpg": "ok JPEG 160x120",
        "gray.jpg": "ok JPEG 160x120",
        "animated.gif": "ok GIF 160x120",
        "photo.webp": "ok WEBP 160x120",
        "photo.tiff": "ok TIFF 160x120",
        "photo.bmp": "ok BMP 160x120",
        "rotated.jpg": "ok JPEG 120x160",
        "bomb.png": "quarantined too many pixels",
        "wide.png": "quarantined aspect ratio too extreme",
        "dot.png": "quarantined too small (1×1, a side below 64 pixels)",
        "name with spaces.jpg": "ok JPEG 160x120",
        unicodedata.normalize("NFD", "café.jpg"): "ok JPEG 160x120",
        unicodedata.normalize("NFC", "crème brûlée.jpg"): "ok JPEG 160x120",
    }
