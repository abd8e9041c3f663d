#!/usr/bin/env python
"""From-scratch `dvc repro` of the whole dataset as one drop, per stage: wall time and peak
resident memory, for the default and the head-only profile; then a no-op `dvc repro`.

Each profile runs in a throw-away project copy of its own, from empty caches. Stages run one
`dvc repro --single-item` at a time, in DAG order, so each gets its own wall time and its own
peak RSS (the largest process of the stage's tree: the kernel's count, from wait4). `total` sums
the stages' seconds (and takes their largest peak); `noop` is `dvc repro` once more with nothing
changed. The summary below the table sets each total against the performance targets.

    python -m benchmarks.pipeline [--dataset PATH] [--profiles default head] [--keep]
"""

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks.common import (
    METRICS_FILE,
    NOOP,
    STAGES,
    TOTAL,
    BenchmarkProject,
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
from prodcls_pipeline.core.numbers import round_measure

BENCHMARK = "pipeline"
FIELDS = ("profile", "stage", "seconds", "peak_rss_mb")
RESULT_KEY = ("profile", "stage")
PROFILES = ("default", "head")
# The targets on this 2-core machine: seconds of a from-scratch run per profile, no-op.
TARGET_SECONDS = {"default": 20 * 60, "head": 5 * 60}
NOOP_TARGET_SECONDS = 3.0
TOP1_TARGET = {"default": 0.85}


def profile_rows(project: BenchmarkProject, profile: str) -> list[dict[str, Any]]:
    rows = []
    for stage in STAGES:
        seconds, peak = project.measured_run(
            f"{profile}-{stage}", "dvc", "repro", "--single-item", stage
        )
        rows.append(_row(profile, stage, seconds, peak))
        print(f"  {profile} {stage}: {seconds:.1f} s, peak {peak:.0f} MiB", flush=True)
    rows.append(
        _row(
            profile,
            TOTAL,
            sum(row["seconds"] for row in rows),
            max(row["peak_rss_mb"] for row in rows),
        )
    )
    seconds, peak = project.measured_run(f"{profile}-noop", "dvc", "repro")
    rows.append(_row(profile, NOOP, seconds, peak))
    return rows


def _row(profile: str, stage: str, seconds: float, peak: float) -> dict[str, Any]:
    return {
        "profile": profile,
        "stage": stage,
        "seconds": round_measure(seconds),
        "peak_rss_mb": round_measure(peak),
    }


def _against(met: bool, target: str) -> str:
    return f"({'meets' if met else 'misses'} {target})"


def verdicts(rows: list[dict[str, Any]], top1: dict[str, float]) -> list[str]:
    """One line per profile: its total and no-op against the targets, and its test top-1."""
    lines = []
    for profile in dict.fromkeys(row["profile"] for row in rows):
        seconds = {row["stage"]: row["seconds"] for row in rows if row["profile"] == profile}
        parts = [f"{profile}: from scratch {seconds[TOTAL] / 60:.1f} min"]
        if profile in TARGET_SECONDS:
            target = TARGET_SECONDS[profile]
            parts.append(_against(seconds[TOTAL] <= target, f"{target / 60:.0f} min"))
        parts.append(f"no-op {seconds[NOOP]:.1f} s")
        parts.append(
            _against(seconds[NOOP] < NOOP_TARGET_SECONDS, f"< {NOOP_TARGET_SECONDS:.0f} s")
        )
        parts.append(f"test top-1 {top1[profile]:.4f}")
        if profile in TOP1_TARGET:
            target = TOP1_TARGET[profile]
            parts.append(_against(top1[profile] >= target, f"{target:.0%}"))
        lines.append(" ".join(parts))
    return lines


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataset_arguments(parser)
    parser.add_argument(
        "--profiles", nargs="+", default=list(PROFILES), help="benchmarks/configs names"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        dataset = dataset_folder(args.dataset)
        configurations = load_configurations(args.profiles, read_params())
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    label = dataset_label(dataset)
    rows: list[dict[str, Any]] = []
    top1: dict[str, float] = {}
    try:
        for configuration in configurations:
            with project_with_dataset(dataset, label, args.keep) as project:
                project.write_params(configuration.params(read_params(project.root)))
                rows += profile_rows(project, configuration.name)
                top1[configuration.name] = project.read_json(METRICS_FILE)["top1"]
    except StageFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"\nFrom-scratch dvc repro of {label} as one drop, per stage:")
    print(format_table(rows, FIELDS))
    print("\n".join(verdicts(rows, top1)))
    print(f"\nWrote {write_results(BENCHMARK, rows, FIELDS, RESULT_KEY)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
