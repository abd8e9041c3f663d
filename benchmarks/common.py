"""The reusable parts of every benchmark in this folder.

A benchmark runs the real pipeline in a throw-away copy of the project (so the working tree and
its DVC cache stay untouched), under one or more named configurations: YAML files whose nested
keys are merged into params.yaml. Each benchmark script prints a table and writes its rows to
benchmarks/results/<benchmark>.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS_DIR = REPO / "benchmarks" / "configs"
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "grocery-store"
COMPACT_COPY_NOTE = "compact .webp copy, lossy-recompressed"
PARAMS_FILE = "params.yaml"
CATALOG_FILE = "conf/base/catalog.yml"
DESCRIPTION_KEY = "description"

# What a fresh clone needs to run `dvc repro`: the same files the end-to-end test copies.
PROJECT_FILES = (
    "conf",
    "src",
    "dvc.yaml",
    PARAMS_FILE,
    "pyproject.toml",
    "requirements.lock",
    ".dvc",
    ".dvcignore",
    ".gitignore",
    "data/01_raw/review_decisions.csv",
)
DATA_LAYERS = (
    "01_raw/drops",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "06_models",
    "07_model_output",
    "08_reporting",
)
DROPS_DIR = Path("data/01_raw/drops")
# The stages in DAG order, as dvc.yaml runs them, and the rows a per-stage table adds to them.
STAGES = ("ingest", "validate", "split", "augment", "train", "evaluate", "compress", "package")
TOTAL, NOOP = "total", "noop"
METRICS_FILE = "data/08_reporting/metrics.json"
# The project copy inside a benchmark's working folder.
PROJECT_FOLDER = "prodcls"
LOG_TAIL_CHARS = 4000
KIB_PER_MIB = 1024  # ru_maxrss is in KiB on Linux


def copy_project_files(root: Path, extra: Sequence[str] = ()) -> None:
    """The project's files (and `extra` ones) copied to a new folder `root`, without caches,
    with empty data layers."""
    root.mkdir(parents=True)
    for name in (*PROJECT_FILES, *extra):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(
                source,
                root / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "tmp", "cache"),
            )
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    for layer in DATA_LAYERS:
        (root / "data" / layer).mkdir(parents=True, exist_ok=True)


class ConfigurationError(ValueError):
    """A benchmark configuration file that does not fit params.yaml."""


class StageFailed(RuntimeError):
    """A pipeline command in the benchmark project exited non-zero."""


@dataclass(frozen=True)
class Configuration:
    """A named set of params.yaml overrides."""

    name: str
    description: str
    overrides: dict[str, Any]

    def params(self, base: dict[str, Any]) -> dict[str, Any]:
        return merge_params(base, self.overrides)


def merge_params(
    base: dict[str, Any], overrides: dict[str, Any], where: str = ""
) -> dict[str, Any]:
    """`base` with `overrides` merged in, nested mappings key by key; neither is modified.

    A key absent from `base` is an error, not a new param: a typo must not run silently as
    the defaults (the trap of `dvc exp run -S`).
    """
    merged = dict(base)
    for key, value in overrides.items():
        path = f"{where}{key}"
        if key not in base:
            known = ", ".join(map(str, base)) or "none"
            raise ConfigurationError(f"Unknown param {path!r} (known here: {known})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigurationError(f"Param {path!r} is a section; got {value!r}")
            merged[key] = merge_params(base[key], value, f"{path}.")
        elif isinstance(value, dict):
            raise ConfigurationError(f"Param {path!r} is a single value; got a section")
        else:
            merged[key] = value
    return merged


def load_configuration(path: Path, base_params: dict[str, Any]) -> Configuration:
    """Read and check `path`: a `description` plus params.yaml sections to override."""
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict):
        raise ConfigurationError(f"{path}: expected a mapping of params.yaml sections")
    overrides = {key: value for key, value in content.items() if key != DESCRIPTION_KEY}
    description = content.get(DESCRIPTION_KEY)
    if not isinstance(description, str) or not description.strip():
        raise ConfigurationError(f"{path}: needs a non-empty `{DESCRIPTION_KEY}`")
    try:
        merge_params(base_params, overrides)
    except ConfigurationError as error:
        raise ConfigurationError(f"{path}: {error}") from error
    return Configuration(path.stem, description.strip(), overrides)


def load_configurations(
    names: Sequence[str], base_params: dict[str, Any], configs_dir: Path = CONFIGS_DIR
) -> list[Configuration]:
    """The named configurations from `configs_dir`, in the order given."""
    available = sorted(path.stem for path in configs_dir.glob("*.yaml"))
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ConfigurationError(
            f"Unknown configuration(s) {', '.join(unknown)}; available: {', '.join(available)}"
        )
    return [load_configuration(configs_dir / f"{name}.yaml", base_params) for name in names]


def read_params(root: Path = REPO) -> dict[str, Any]:
    return yaml.safe_load((root / PARAMS_FILE).read_text())


def device_name(requested: str) -> str:
    """What `train.device` resolves to on this machine: "cpu" or the CUDA device's name."""
    if requested != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


class BenchmarkProject:
    """A throw-away copy of the project, a git repository of its own so lineage works."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root.parent / "logs"

    @classmethod
    def create(cls, parent: Path) -> "BenchmarkProject":
        root = parent / PROJECT_FOLDER
        copy_project_files(root)
        project = cls(root)
        project.logs.mkdir()
        project.run("git-init", "git", "init", "-q")
        project.run("git-add", "git", "add", "-A")
        project.run(
            "git-commit",
            "git",
            "-c",
            "user.name=benchmark",
            "-c",
            "user.email=benchmark@localhost",
            "commit",
            "-qm",
            "benchmark copy",
        )
        return project

    def add_drop(self, dataset: Path, prefix: str) -> None:
        """Lay out the whole of `dataset` as one drop (pinned splits kept) with `prodcls drops`."""
        self.run(
            "drops", "prodcls", "drops", str(dataset), "--dest", str(DROPS_DIR), "--prefix", prefix
        )

    def write_params(self, params: dict[str, Any]) -> None:
        (self.root / PARAMS_FILE).write_text(yaml.safe_dump(params, sort_keys=False))

    def clear_persisted_outputs(self, stage: str) -> None:
        """Delete what `stage` keeps between runs, its persisted outputs and the embedding
        caches it fills (which are no DVC outputs), for a cold, fair start."""
        stage_outs = yaml.safe_load((self.root / "dvc.yaml").read_text())["stages"][stage]["outs"]
        for out in stage_outs:
            if isinstance(out, dict):
                [(path, options)] = out.items()
                if options.get("persist"):
                    shutil.rmtree(self.root / path, ignore_errors=True)
        for path in self.embedding_caches(stage):
            shutil.rmtree(self.root / path, ignore_errors=True)

    def embedding_caches(self, stage: str) -> list[str]:
        """The paths of the catalog's embedding stores that `stage`'s pipeline uses."""
        from importlib import import_module

        from prodcls_pipeline.training.embedding_cache import EmbeddingStore

        store_class = f"{EmbeddingStore.__module__}.{EmbeddingStore.__qualname__}"
        catalog = yaml.safe_load((self.root / CATALOG_FILE).read_text())
        pipeline = import_module(f"prodcls_pipeline.pipelines.{stage}").create_pipeline()
        return [
            catalog[name]["path"]
            for name in sorted(pipeline.datasets())
            if catalog.get(name, {}).get("store") == store_class
        ]

    def repro(self, stage: str, log_name: str, force: bool = False) -> float:
        """`dvc repro` up to `stage` (or exactly `stage`, re-run, with `force`); wall seconds."""
        options = ["--force", "--no-run-cache", "--single-item"] if force else []
        started = time.perf_counter()
        self.run(log_name, "dvc", "repro", *options, stage)
        return time.perf_counter() - started

    def read_json(self, relative: str) -> Any:
        return json.loads((self.root / relative).read_text())

    def run(self, log_name: str, *command: str) -> None:
        """Run `command` in the project; its output goes to logs/<log_name>.log."""
        self.measured_run(log_name, *command)

    def measured_run(self, log_name: str, *command: str) -> tuple[float, float]:
        """`run`, returning (wall seconds, peak RSS in MiB of the largest process of the command's
        tree: the kernel's count, read by a small wrapper process; a child forked from this
        one would start its count at this process's size)."""
        log = self.logs / f"{log_name}.log"
        peak_file = self.logs / f"{log_name}.peak_rss_kib"
        started = time.perf_counter()
        with log.open("w") as stream:
            result = subprocess.run(
                [sys.executable, "-c", _PEAK_RSS_WRAPPER, str(peak_file), *command],
                check=False,
                cwd=self.root,
                env=_pipeline_environment(),
                stdout=stream,
                stderr=subprocess.STDOUT,
            )
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise StageFailed(
                f"{' '.join(command)} exited with {result.returncode}; full log: {log}\n"
                + log.read_text()[-LOG_TAIL_CHARS:]
            )
        return seconds, int(peak_file.read_text()) / KIB_PER_MIB


# argv: the file to write the peak RSS (KiB) of the command's tree to, then the command.
_PEAK_RSS_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """`--dataset` and `--keep`, the options every benchmark on a dataset takes."""
    parser.add_argument(
        "--dataset",
        type=Path,
        default=DEFAULT_DATASET,
        help="Grocery Store layout dataset (default: %(default)s)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp project copy and logs for inspection"
    )


def dataset_folder(path: Path) -> Path:
    """`path` resolved; a path that is not a folder is a configuration error."""
    dataset = path.resolve()
    if not dataset.is_dir():
        raise ConfigurationError(f"dataset {dataset} is not a folder")
    return dataset


def dataset_label(dataset: Path) -> str:
    """The dataset's folder name, saying so when it is the compact (lossy .webp) copy."""
    if next(dataset.rglob("*.webp"), None) is not None:
        return f"{dataset.name} ({COMPACT_COPY_NOTE})"
    return dataset.name


@contextmanager
def project_with_dataset(dataset: Path, label: str, keep: bool) -> Iterator[BenchmarkProject]:
    """A throw-away project copy with the whole of `dataset` (called `label` in the results) as
    its one drop; deleted on exit unless `keep`, in which case its folder is printed."""
    workdir = Path(tempfile.mkdtemp(prefix="prodcls-benchmark-"))
    print(f"Dataset {dataset} ({label}); project copy in {workdir}")
    try:
        project = BenchmarkProject.create(workdir)
        project.add_drop(dataset, prefix=dataset.name)
        yield project
    finally:
        if keep:
            print(f"Kept the project copy and logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _pipeline_environment() -> dict[str, str]:
    # The copy must track into its own MLflow store, never the caller's.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return environment | {
        "KEDRO_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
    }


def check_rows(rows: list[dict[str, Any]], fields: Sequence[str]) -> None:
    """Every row has exactly `fields`, so result files of one benchmark stay comparable."""
    for row in rows:
        if list(row) != list(fields):
            raise ValueError(f"Result row fields {list(row)} differ from {list(fields)}")


def write_results(
    benchmark: str,
    rows: list[dict[str, Any]],
    fields: Sequence[str],
    key: Sequence[str],
    results_dir: Path = RESULTS_DIR,
) -> Path:
    """Write `rows` to <results_dir>/<benchmark>.json, replacing earlier rows with the same key.

    Rows of other keys are kept, so configurations measured in separate runs (say, `full` on
    a GPU machine) end up in one file.
    """
    check_rows(rows, fields)
    path = results_dir / f"{benchmark}.json"
    previous = json.loads(path.read_text()) if path.is_file() else []
    new_keys = {tuple(row[name] for name in key) for row in rows}
    kept = [row for row in previous if tuple(row.get(name) for name in key) not in new_keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([*kept, *rows], indent=2) + "\n")
    return path


def format_table(rows: list[dict[str, Any]], fields: Sequence[str]) -> str:
    """A plain-text table, one column per field; None shown as "-"."""
    cells = [[_cell(row[field]) for field in fields] for row in rows]
    widths = [
        max([len(field), *(len(line[i]) for line in cells)]) for i, field in enumerate(fields)
    ]
    lines = [
        "  ".join(field.ljust(width) for field, width in zip(fields, widths, strict=True)),
        "  ".join("-" * width for width in widths),
        *("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells),
    ]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        # Scores in [0, 1] need four places; seconds and other magnitudes one.
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)
