#!/usr/bin/env python
"""Every benchmark, one after the other, each with its own defaults: each prints its table and
writes `results/<name>.json`; this prints, at the end, how long each took and how it ended.

They run in sequence, never side by side: on two cores a second heavy job would falsify both
timings. The whole set takes hours on CPU (grocery_accuracy and incremental most of them):
`--only` and `--skip` choose.

    python -m benchmarks.run_all [--only pipeline inference ...] [--skip grocery_accuracy ...]
"""

import argparse
import importlib
import sys
import time
from collections.abc import Sequence

from benchmarks.common import RESULTS_DIR, format_table

# Cheapest first, so a short run still reports the quick ones.
BENCHMARKS = (
    "inference",
    "int8_speedup",
    "compression",
    "drift",
    "label_noise",
    "pipeline",
    "incremental",
    "grocery_accuracy",
)
FIELDS = ("benchmark", "seconds", "exit_status", "results")
# int8_speedup times the project's own compress outputs: a run's, or none.
NEEDS_A_RUN = {"int8_speedup": "run `dvc repro` in the project first (bash scripts/main.sh)"}


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run just these")
    parser.add_argument("--skip", nargs="+", choices=BENCHMARKS, default=[], help="leave these out")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    chosen = [name for name in args.only or BENCHMARKS if name not in args.skip]
    rows = []
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        status = importlib.import_module(f"benchmarks.{name}").main([])
        if status and name in NEEDS_A_RUN:
            print(f"{name}: {NEEDS_A_RUN[name]}")
        rows.append(
            {
                "benchmark": name,
                "seconds": round(time.perf_counter() - started, 1),
                "exit_status": status,
                "results": str(RESULTS_DIR.relative_to(RESULTS_DIR.parents[1]) / f"{name}.json"),
            }
        )
    print("\n" + format_table(rows, FIELDS))
    return max((row["exit_status"] for row in rows), default=0)


if __name__ == "__main__":
    sys.exit(main())
