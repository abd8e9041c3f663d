"""Helpers shared by the test modules (no test module imports another).

- The project's own import graph, read from the source with `ast`, for the architecture tests.
- A tiny real model package, logged as the pyfunc model and registered as the champion, for the
  serving, CLI and HTTP tests. The classifier scores each colour channel, so a solid colour has a
  known label, and it is exported with the project's own ONNX exporter.
"""

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
import yaml
from mlflow import MlflowClient
from torch import nn

from prodcls_pipeline.core.tracking import TRACKING_URI_ENV, use_project_tracking
from prodcls_pipeline.models.onnx_export import export_onnx
from prodcls_pipeline.release.package import (
    LABEL_MAP_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    label_map,
    onnx_io,
    preprocessing_spec,
)
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
        PREPROCESSING_FILE: json.dumps(preprocessing_spec(PREPROCESSING, onnx_io(model))).encode(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def sample_images(count: int) -> list[Path]:
    """The first `count` real photos of the bundled sample, in a stable order."""
    return sorted(SAMPLE_DIR.rglob("*.jpg"))[:count]


@contextmanager
def champion_registry(root: Path) -> Iterator[str]:
    """A sqlite store under `root` where MODEL_NAME@champion is the pyfunc model of a fresh
    package; yields its tracking URI, which is MLflow's (and $MLFLOW_TRACKING_URI) until exit.

    Logging and registering fail the test if they open any network connection.
    """
    uri = f"sqlite:///{root}/mlflow.db"
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
            mlflow.set_tracking_uri(None)


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


# What a project copy for a pipeline test needs from the repository.
PROJECT_FILES = [
    "conf",
    "src",
    "sample",
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    "requirements.lock",
    ".dvc",
    ".dvcignore",
    ".gitignore",
]
DATA_LAYERS = [
    "01_raw/drops",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "06_models",
    "07_model_output",
    "08_reporting",
]


def run(project: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {
        "KEDRO_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    }
    result = subprocess.run(
        command, check=False, cwd=project, env=env, capture_output=True, text=True
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
    root.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(
                source,
                root / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "tmp", "cache"),
            )
        else:
            shutil.copy2(source, root / name)
    params_file = root / "params.yaml"
    params = merge(yaml.safe_load(params_file.read_text()), params_overrides or {})
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    for layer in DATA_LAYERS:
        (root / "data" / layer).mkdir(parents=True, exist_ok=True)
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
