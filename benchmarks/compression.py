#!/usr/bin/env python
"""Every compressed variant side by side on the Grocery Store test split, on this CPU.

The dataset becomes one drop (official split pinned); a throw-away copy of the project runs
`dvc repro compress` under one configuration (default: params.yaml as is) with every pruned and
distilled variant switched on (configs/all-variants.yaml), and the compress
stage's report becomes the table: size, parameters, ONNX Runtime images/s at batch 1 and 32,
batch-1 latency, test top-1 and macro-F1, and the top-1 change against fp32.

    python -m benchmarks.compression [--config NAME] [--dataset PATH] [--keep]
"""

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import (
    ConfigurationError,
    StageFailed,
    add_dataset_arguments,
    dataset_folder,
    dataset_label,
    format_table,
    load_configurations,
    project_with_dataset,
    read_params,
    write_results,
)

BENCHMARK = "compression"
FIELDS = (
    "variant",
    "size_mb",
    "params",
    "ips_b1",
    "ips_b32",
    "p50_ms",
    "p95_ms",
    "top1",
    "macro_f1",
    "delta_top1",
    "deployed",
    "config",
    "dataset",
)
RESULT_KEY = ("variant", "config", "dataset")
REPORT_FILE = "data/08_reporting/compression_report.json"
DEFAULT_CONFIG = "params.yaml"
# The loop makes only deployable variants; this benchmark always adds every other one.
ALL_VARIANTS_CONFIG = "all-variants"


def report_rows(report: dict[str, Any], config: str, dataset: str) -> list[dict[str, Any]]:
    """One row per variant of a compress-stage report, in FIELDS order."""
    measured = FIELDS[: FIELDS.index("deployed")]
    return [
        {
            **{field: variant[field] for field in measured},
            "deployed": name == report["deployable"],
            "config": config,
            "dataset": dataset,
        }
        for name, variant in report["variants"].items()
    ]


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        default=None,
        help="a configuration from benchmarks/configs (default: params.yaml unchanged)",
    )
    add_dataset_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    params = read_params()
    config = DEFAULT_CONFIG
    try:
        if args.config:
            [configuration] = load_configurations([args.config], params)
            params, config = configuration.params(params), configuration.name
        [all_variants] = load_configurations([ALL_VARIANTS_CONFIG], params)
        params = all_variants.params(params)
        dataset = dataset_folder(args.dataset)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    label = dataset_label(dataset)
    try:
        with project_with_dataset(dataset, label, args.keep) as project:
            project.write_params(params)
            started = time.perf_counter()
            project.repro("evaluate", "evaluate")
            print(f"ingest → … → evaluate: {time.perf_counter() - started:.0f} s")
            compress_seconds = project.repro("compress", "compress", force=True)
            print(f"compress: {compress_seconds:.0f} s")
            report = project.read_json(REPORT_FILE)
    except StageFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rows = report_rows(report, config, label)
    print(
        f"\nCompressed variants, {report['test_images']} test images ({label}), "
        f"{report['cpu_cores']} CPU cores, ONNX Runtime {report['onnxruntime_version']}"
    )
    print(format_table(rows, FIELDS))
    print(f"Deployed by the rule: {report['deploy_rule']['text']}")
    print(f"\nWrote {write_results(BENCHMARK, rows, FIELDS, RESULT_KEY)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
