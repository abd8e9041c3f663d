#!/usr/bin/env python
"""What one more drop costs: from-scratch history, a no-op, and a 100-image drop warm and cold.

The dataset minus a seeded sample of `--drop-images` training images is laid out as a history of
`--history` drops (`prodcls drops --history`) in a throw-away project copy, and `dvc repro`
runs from empty caches (`scratch`); then `dvc repro` again with nothing changed (`noop`). From
a snapshot of that state, the held-back images land as one more drop and `dvc repro` runs with
`train.warm_start: champion` (`drop_warm`) and with `none` (`drop_cold`), once per seed; every
run restarts from the same snapshot at the same path (MLflow keeps absolute artifact paths).

Stages run one `dvc repro --single-item` at a time, in DAG order, so each gets its own wall
time; a stage with nothing to do costs DVC's check only. Top-1 is the test top-1 of the model
each run trained (the test split is the official one, pinned, so every model is scored on the
same images). The seed changes the training images' augmented views too, so runs with a seed
other than the history's re-embed those views: compare wall times at the history's seed.

    python -m benchmarks.incremental [--dataset PATH] [--history 5] [--drop-images 100]
                                     [--seeds 3] [--first-seed 42]
                                     [--scenarios drop_warm drop_cold] [--keep] [--resume DIR]

`--scenarios` runs only the named drop scenarios, and `--resume DIR` only the drop scenarios,
from the snapshot a `--keep` run left in DIR; the results file keeps the rows of the others.
"""

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import (
    DROPS_DIR,
    METRICS_FILE,
    NOOP,
    PROJECT_FOLDER,
    RESULTS_DIR,
    STAGES,
    TOTAL,
    BenchmarkProject,
    ConfigurationError,
    StageFailed,
    add_dataset_arguments,
    dataset_folder,
    dataset_label,
    format_table,
    write_results,
)

BENCHMARK = "incremental"
FIELDS = ("scenario", "stage", "seconds", "top1", "seed")
RESULT_KEY = ("scenario", "stage", "seed")
DEFAULT_HISTORY = 5
DEFAULT_DROP_IMAGES = 100
DEFAULT_SEEDS = 3
FIRST_SEED = 42
EXTRA_DROP_PREFIX = "extra"
# The folders of a run's working directory (kept with --keep, reused with --resume).
HISTORY_SOURCE, EXTRA_SOURCE = "history-source", "extra-source"
SNAPSHOT = "snapshot"
# The Grocery Store layout: classes.csv and one `path, fine_id, coarse_id` list per split.
CLASSES_FILE = "classes.csv"
TRAIN_LIST = "train.txt"
SPLIT_LISTS = (TRAIN_LIST, "val.txt", "test.txt")
WARM, COLD = "champion", "none"
SCENARIOS = {"drop_warm": WARM, "drop_cold": COLD}


def held_back_lines(train_lines: Sequence[str], count: int, seed: int) -> set[str]:
    """A seeded sample of `count` lines of the dataset's train.txt: the drop that lands last."""
    lines = sorted(line for line in train_lines if line.strip())
    if count > len(lines):
        raise ConfigurationError(f"--drop-images {count} exceeds the {len(lines)} training images")
    return set(random.Random(seed).sample(lines, count))


def split_dataset(dataset: Path, held_back: set[str], history: Path, extra: Path) -> None:
    """Two Grocery Store folders: `history` without the held-back training images, `extra`
    with only them (same classes.csv, same relative paths)."""
    lists = {
        name: [line for line in (dataset / name).read_text().splitlines() if line.strip()]
        for name in SPLIT_LISTS
        if (dataset / name).is_file()
    }
    kept = {
        name: [line for line in lines if line not in held_back] for name, lines in lists.items()
    }
    _write_grocery_store(dataset, history, kept)
    _write_grocery_store(dataset, extra, {TRAIN_LIST: sorted(held_back)})


def _write_grocery_store(dataset: Path, target: Path, lists: dict[str, list[str]]) -> None:
    target.mkdir(parents=True)
    shutil.copy2(dataset / CLASSES_FILE, target / CLASSES_FILE)
    for name, lines in lists.items():
        (target / name).write_text("".join(f"{line}\n" for line in lines))
        for line in lines:
            relative = line.split(",")[0].strip()
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(dataset / relative, target / relative)


def timed_repro(project: BenchmarkProject, scenario: str) -> dict[str, float]:
    """Each stage's wall seconds, one `dvc repro --single-item` after the other."""
    seconds = {}
    for stage in STAGES:
        started = time.perf_counter()
        project.run(f"{scenario}-{stage}", "dvc", "repro", "--single-item", stage)
        seconds[stage] = time.perf_counter() - started
    return seconds


def scenario_rows(
    scenario: str, seconds: dict[str, float], top1: float | None, seed: int
) -> list[dict[str, Any]]:
    """One row per stage and a `total` row carrying the model's test top-1."""
    rows = [
        {
            "scenario": scenario,
            "stage": stage,
            "seconds": round(value, 1),
            "top1": None,
            "seed": seed,
        }
        for stage, value in seconds.items()
    ]
    total = round(sum(seconds.values()), 1)
    return [
        *rows,
        {"scenario": scenario, "stage": TOTAL, "seconds": total, "top1": top1, "seed": seed},
    ]


def recorded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows`, printed and written to the results file as soon as they are measured: the run
    takes hours, and a stopped one keeps every scenario it finished."""
    print(format_table(rows, FIELDS), flush=True)
    write_results(BENCHMARK, rows, FIELDS, RESULT_KEY)
    return rows


def set_params(project: BenchmarkProject, seed: int, warm_start: str) -> None:
    path = project.root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["seed"] = seed
    params["train"]["warm_start"] = warm_start
    project.write_params(params)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=DEFAULT_HISTORY, help="drops in the history")
    parser.add_argument(
        "--drop-images", type=int, default=DEFAULT_DROP_IMAGES, help="images in the last drop"
    )
    parser.add_argument(
        "--seeds", type=int, default=DEFAULT_SEEDS, help="seeds per drop scenario (42, 43, …)"
    )
    parser.add_argument(
        "--first-seed", type=int, default=FIRST_SEED, help="seed of the first drop run"
    )
    parser.add_argument(
        "--resume",
        type=Path,
        help="a project folder a --keep run left: run only the drop scenarios from its snapshot",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=list(SCENARIOS),
        default=list(SCENARIOS),
        help="drop scenarios to run (default: all)",
    )
    add_dataset_arguments(parser)
    return parser.parse_args(argv)


def run_history(args: argparse.Namespace, dataset: Path, workdir: Path) -> list[dict[str, Any]]:
    """The `scratch` and `noop` scenarios; leaves the history's state in `workdir/snapshot`."""
    history = workdir / HISTORY_SOURCE
    train_lines = (dataset / TRAIN_LIST).read_text().splitlines()
    split_dataset(
        dataset,
        held_back_lines(train_lines, args.drop_images, FIRST_SEED),
        history,
        workdir / EXTRA_SOURCE,
    )
    project = BenchmarkProject.create(workdir)
    project.run(
        "history",
        "prodcls",
        "drops",
        str(history),
        "--dest",
        str(DROPS_DIR),
        "--history",
        str(args.history),
    )
    rows = []
    seconds = timed_repro(project, "scratch")
    top1 = project.read_json(METRICS_FILE)["top1"]
    rows += recorded(scenario_rows("scratch", seconds, top1, FIRST_SEED))
    started = time.perf_counter()
    project.run(NOOP, "dvc", "repro")
    noop = {
        "scenario": NOOP,
        "stage": TOTAL,
        "seconds": round(time.perf_counter() - started, 1),
        "top1": None,
        "seed": FIRST_SEED,
    }
    rows += recorded([noop])
    shutil.copytree(project.root, workdir / SNAPSHOT, symlinks=True)
    return rows


def run_drops(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """The drop scenarios, each run restarting from the history's snapshot at the same path.

    Every warm seed before the cold ones: the warm runs are the short ones, so a run stopped
    early still has the warm spread and the cold retrain at the history's seed.
    """
    project, snapshot = BenchmarkProject(workdir / PROJECT_FOLDER), workdir / SNAPSHOT
    rows = []
    for scenario in args.scenarios:
        warm_start = SCENARIOS[scenario]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            shutil.rmtree(project.root)
            shutil.copytree(snapshot, project.root, symlinks=True)
            set_params(project, seed, warm_start)
            project.run(
                f"{scenario}-{seed}-drop",
                "prodcls",
                "drops",
                str(workdir / EXTRA_SOURCE),
                "--dest",
                str(DROPS_DIR),
                "--prefix",
                EXTRA_DROP_PREFIX,
            )
            seconds = timed_repro(project, f"{scenario}-{seed}")
            top1 = project.read_json(METRICS_FILE)["top1"]
            rows += recorded(scenario_rows(scenario, seconds, top1, seed))
    return rows


def run_benchmark(args: argparse.Namespace, dataset: Path, workdir: Path) -> list[dict[str, Any]]:
    history_rows = [] if args.resume else run_history(args, dataset, workdir)
    return history_rows + run_drops(args, workdir)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        dataset = dataset_folder(args.dataset)
        if not (dataset / TRAIN_LIST).is_file():
            raise ConfigurationError(f"{dataset} is not a Grocery Store layout folder")
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.resume and not (args.resume / SNAPSHOT).is_dir():
        print(f"error: {args.resume} holds no {SNAPSHOT}/ of a --keep run", file=sys.stderr)
        return 2
    # A resumed folder is the one the history was built in: MLflow keeps absolute paths.
    workdir = args.resume or Path(tempfile.mkdtemp(prefix="prodcls-incremental-"))
    print(f"Dataset {dataset} ({dataset_label(dataset)}); project copies in {workdir}")
    try:
        rows = run_benchmark(args, dataset, workdir)
    except (StageFailed, ConfigurationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep or args.resume:
            print(f"Kept the project copies and logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nOne more {args.drop_images}-image drop after a {args.history}-drop history:")
    print(format_table(rows, FIELDS))
    print(f"\nWrote {RESULTS_DIR / BENCHMARK}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
