#!/usr/bin/env python
"""Accuracy of each training configuration on the Grocery Store dataset's official split.

The dataset becomes one drop (its train/val/test split pinned in labels.csv); a throw-away copy
of the project runs ingest → validate → split → augment once, then train and evaluate per
configuration (benchmarks/configs/<name>.yaml merged into params.yaml). Each configuration starts
with the train stage's caches cleared, so its train_seconds is what a first `dvc repro` costs.

    python -m benchmarks.grocery_accuracy [--configs head,partial] [--dataset PATH] [--keep]
"""

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from benchmarks.common import (
    METRICS_FILE,
    BenchmarkProject,
    Configuration,
    ConfigurationError,
    StageFailed,
    add_dataset_arguments,
    dataset_folder,
    dataset_label,
    device_name,
    format_table,
    load_configurations,
    project_with_dataset,
    read_params,
    write_results,
)

BENCHMARK = "grocery_accuracy"
# `full` is left out by default: hours of fine-tuning on CPU.
DEFAULT_CONFIGS = ("default", "default-adv", "head", "head-noaug", "partial", "partial-adv")
FIELDS = (
    "config",
    "mode",
    "backbone",
    "fine_top1",
    "coarse_top1",
    "macro_f1",
    "fgsm_top1",
    "train_seconds",
    "device",
    "dataset",
)
RESULT_KEY = ("config", "dataset")


def result_row(
    config: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    train_seconds: float,
    device: str,
    dataset: str,
) -> dict[str, Any]:
    """One results row from a configuration's merged params and its evaluate metrics."""
    return {
        "config": config,
        "mode": params["train"]["mode"],
        "backbone": params["train"]["backbone"],
        "fine_top1": metrics["top1"],
        "coarse_top1": metrics["coarse_top1"],
        "macro_f1": metrics["macro_f1"],
        "fgsm_top1": metrics.get("fgsm_top1"),
        "train_seconds": round(float(train_seconds), 1),
        "device": device,
        "dataset": dataset,
    }


def run_configurations(
    project: BenchmarkProject,
    configurations: list[Configuration],
    base_params: dict[str, Any],
    dataset: str,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Train and evaluate each configuration in turn: result rows, and failures by name."""
    rows: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    for configuration in tqdm(configurations, desc="configurations", unit="config"):
        name = configuration.name
        params = configuration.params(base_params)
        device = device_name(params["train"]["device"])
        if params["train"]["mode"] == "full" and device == "cpu":
            tqdm.write(f"[{name}] warning: full fine-tuning on CPU takes hours")
        project.write_params(params)
        project.clear_persisted_outputs("train")
        tqdm.write(f"[{name}] {configuration.description}")
        try:
            project.repro("augment", f"{name}-augment")
            train_seconds = project.repro("train", f"{name}-train", force=True)
            tqdm.write(f"[{name}] train: {train_seconds:.0f} s")
            project.repro("evaluate", f"{name}-evaluate", force=True)
        except StageFailed as error:
            tqdm.write(f"[{name}] failed: {error}")
            failures[name] = str(error).splitlines()[0]
            continue
        metrics = project.read_json(METRICS_FILE)
        rows.append(result_row(name, params, metrics, train_seconds, device, dataset))
    return rows, failures


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help="comma-separated names from benchmarks/configs (default: %(default)s)",
    )
    add_dataset_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    base_params = read_params()
    try:
        configurations = load_configurations(args.configs.split(","), base_params)
        dataset = dataset_folder(args.dataset)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    label = dataset_label(dataset)
    try:
        with project_with_dataset(dataset, label, args.keep) as project:
            started = time.perf_counter()
            project.repro("augment", "prepare")
            print(f"ingest → validate → split → augment: {time.perf_counter() - started:.0f} s")
            rows, failures = run_configurations(project, configurations, base_params, label)
    except StageFailed as error:
        print(f"error: preparing the dataset failed: {error}", file=sys.stderr)
        return 1
    print(f"\nGrocery Store accuracy, test split ({label})")
    print(format_table(rows, FIELDS))
    if rows:
        print(f"\nWrote {write_results(BENCHMARK, rows, FIELDS, RESULT_KEY)}")
    for name, reason in failures.items():
        print(f"FAILED {name}: {reason}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
