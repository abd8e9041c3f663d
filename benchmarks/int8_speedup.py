#!/usr/bin/env python
"""Where int8 gains its speed over fp32 on this CPU, and where it does not.

The compress stage's fp32 and int8 ONNX models are timed side by side at one batch size, in
interleaved rounds, with every runtime this environment has: ONNX Runtime's CPU provider (the
project's own session settings) and, if the `openvino` package is installed, OpenVINO. Each
runtime's profiler then splits a batch's time by kind of operator (pointwise, depthwise and full
convolutions, the rest), so the table shows which part limits the whole model's speedup.

Speed depends on the architecture and input size, not on the weights' values: the models of the
bundled sample's run time as those of the full dataset's. `--project` takes any project folder
whose compress stage has run (a benchmark's `--keep` copy, say).

    python -m benchmarks.int8_speedup [--project DIR] [--batch-size 32] [--rounds 7] [--batches 8]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from tqdm import tqdm

from benchmarks.common import REPO, format_table, write_results
from prodcls_pipeline.compression.variants import REFERENCE_VARIANT
from prodcls_pipeline.core.numbers import round_measure
from prodcls_pipeline.models.onnx_export import INPUT_NAME
from prodcls_pipeline.pipelines.compress.nodes import INT8_VARIANT
from prodcls_pipeline.runtime.sessions import available_cores, create_session, session_options

BENCHMARK = "int8_speedup"
FIELDS = ("runtime", "part", "fp32_ms", "int8_ms", "speedup", "int8_share", "backbone", "cores")
RESULT_KEY = ("runtime", "part", "backbone", "cores")
VARIANTS = (REFERENCE_VARIANT, INT8_VARIANT)
MODELS_DIR = Path("data/07_model_output/onnx")
CHECKPOINT = Path("data/06_models/classifier.pt")
WHOLE_MODEL = "whole model"
POINTWISE, DEPTHWISE, FULL_CONV, OTHER = (
    "pointwise conv",
    "depthwise conv",
    "full conv",
    "other ops",
)
ONNXRUNTIME, OPENVINO = "onnxruntime-cpu", "openvino"
_MILLISECONDS = 1000.0
_ORT_KERNEL_EVENT = "_kernel_time"
_ORT_RUN_EVENT = "model_run"

Run = Callable[[np.ndarray], object]
PartTimes = dict[str, float]


def node_part(node: onnx.NodeProto) -> str:
    """The kind of operator an ONNX node is: a convolution by its shape, or anything else."""
    if not node.op_type.endswith("Conv"):
        return OTHER
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("group", 1) > 1:
        return DEPTHWISE
    if list(attributes.get("kernel_shape", ())) == [1, 1]:
        return POINTWISE
    return FULL_CONV


def openvino_part(node_type: str, exec_type: str) -> str:
    """The kind of operator an OpenVINO profile entry is (its kernel's name tells 1x1 apart)."""
    if node_type == "GroupConvolution":
        return DEPTHWISE
    if node_type == "Convolution":
        return POINTWISE if "1x1" in exec_type else FULL_CONV
    return OTHER


def part_rows(
    runtime: str,
    whole_ms: dict[str, float],
    parts_ms: dict[str, PartTimes],
    backbone: str,
    cores: int,
) -> list[dict[str, Any]]:
    """One row for the whole model (timed unprofiled), then one per operator kind (profiled)."""
    fp32, int8 = parts_ms[REFERENCE_VARIANT], parts_ms[INT8_VARIANT]
    int8_profiled = sum(int8.values())
    measured = {WHOLE_MODEL: (whole_ms[REFERENCE_VARIANT], whole_ms[INT8_VARIANT])}
    for part in (POINTWISE, DEPTHWISE, FULL_CONV, OTHER):
        measured[part] = (fp32.get(part, 0.0), int8.get(part, 0.0))
    return [
        {
            "runtime": runtime,
            "part": part,
            "fp32_ms": round_measure(fp32_ms),
            "int8_ms": round_measure(int8_ms),
            "speedup": round_measure(fp32_ms / int8_ms) if int8_ms else None,
            "int8_share": 1.0 if part == WHOLE_MODEL else round_measure(int8_ms / int8_profiled),
            "backbone": backbone,
            "cores": cores,
        }
        for part, (fp32_ms, int8_ms) in measured.items()
    ]


def seconds_per_batch(run: Run, batch: np.ndarray, batches: int) -> float:
    """Mean seconds per batch, after one untimed batch: the previous model's threads may still
    be spinning down when this one takes over."""
    run(batch)
    started = time.perf_counter()
    for _ in range(batches):
        run(batch)
    return (time.perf_counter() - started) / batches


def onnxruntime_run(model: Path) -> Run:
    session = create_session(model.read_bytes())
    return lambda batch: session.run(None, {INPUT_NAME: batch})


class OnnxRuntimeProfiler:
    """A session with ONNX Runtime's profiler on; `part_times` splits the runs by operator kind."""

    def __init__(self, model: Path) -> None:
        self._folder = tempfile.TemporaryDirectory()
        options = session_options()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(self._folder.name) / "profile")
        options.optimized_model_filepath = str(Path(self._folder.name) / "optimized.onnx")
        self._session = create_session(model.read_bytes(), options)
        optimized = onnx.load(options.optimized_model_filepath).graph
        self._parts = {node.name: node_part(node) for node in optimized.node}

    def run(self, batch: np.ndarray) -> None:
        self._session.run(None, {INPUT_NAME: batch})

    def part_times(self) -> PartTimes:
        """Milliseconds per run in each kind of operator, the first run left out (it also
        packs weights and touches fresh memory)."""
        with self._folder:
            events = json.loads(Path(self._session.end_profiling()).read_text())
        runs = sorted((e for e in events if e.get("name") == _ORT_RUN_EVENT), key=_event_end)
        microseconds: PartTimes = defaultdict(float)
        for event in events:
            name = event.get("name", "")
            if (
                event.get("cat") == "Node"
                and name.endswith(_ORT_KERNEL_EVENT)
                and event["ts"] > _event_end(runs[0])
            ):
                part = self._parts.get(name.removesuffix(_ORT_KERNEL_EVENT), OTHER)
                microseconds[part] += event["dur"]
        return {
            part: total / (len(runs) - 1) / _MILLISECONDS for part, total in microseconds.items()
        }


def _event_end(event: dict[str, Any]) -> int:
    return event["ts"] + event["dur"]


def openvino_request(model: Path, profiled: bool) -> Any:
    import openvino

    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": available_cores(),
        "PERF_COUNT": profiled,
    }
    core = openvino.Core()
    return core.compile_model(core.read_model(str(model)), "CPU", config).create_infer_request()


def openvino_run(model: Path) -> Run:
    request = openvino_request(model, profiled=False)
    return lambda batch: request.infer({0: batch})


class OpenVinoProfiler:
    """An OpenVINO request with performance counters, summed over every run but the first."""

    def __init__(self, model: Path) -> None:
        self._request = openvino_request(model, profiled=True)
        self._runs = 0
        self._milliseconds: PartTimes = defaultdict(float)

    def run(self, batch: np.ndarray) -> None:
        self._request.infer({0: batch})
        self._runs += 1
        if self._runs > 1:
            for entry in self._request.profiling_info:
                part = openvino_part(entry.node_type, entry.exec_type)
                self._milliseconds[part] += entry.real_time.total_seconds() * _MILLISECONDS

    def part_times(self) -> PartTimes:
        return {part: total / (self._runs - 1) for part, total in self._milliseconds.items()}


Profiler = OnnxRuntimeProfiler | OpenVinoProfiler


def available_runtimes() -> dict[str, tuple[Callable[[Path], Run], Callable[[Path], Profiler]]]:
    runtimes = {ONNXRUNTIME: (onnxruntime_run, OnnxRuntimeProfiler)}
    try:
        import openvino  # noqa: F401
    except ImportError:
        return runtimes
    return {**runtimes, OPENVINO: (openvino_run, OpenVinoProfiler)}


def profiled_part_times(
    profilers: dict[str, Profiler], batch: np.ndarray, batches: int
) -> dict[str, PartTimes]:
    """Each variant's time per operator kind, over `batches` runs after an untimed one.

    The variants run one after the other, not interleaved: a profiled run that follows another
    model's would be slowed by that model's threads spinning down, and only the first is left out.
    """
    for profiler in profilers.values():
        for _ in range(batches + 1):
            profiler.run(batch)
    return {variant: profiler.part_times() for variant, profiler in profilers.items()}


def median_milliseconds(
    runs: dict[tuple[str, str], Run], batch: np.ndarray, rounds: int, batches: int
) -> dict[tuple[str, str], float]:
    """Each (runtime, variant) timed once per round, in turn, so drifts in machine load hit
    all of them alike; the median round counts."""
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _ in tqdm(range(rounds), desc="timing rounds", unit="round"):
        for key, run in runs.items():
            seconds[key].append(seconds_per_batch(run, batch, batches))
    return {key: statistics.median(values) * _MILLISECONDS for key, values in seconds.items()}


def checkpoint_backbone(project: Path) -> str:
    return torch.load(project / CHECKPOINT, map_location="cpu", weights_only=True)["backbone"]


def input_batch(model: Path, batch_size: int, seed: int = 0) -> np.ndarray:
    """A seeded batch of the model's input shape (values do not change the speed)."""
    dims = onnx.load(str(model), load_external_data=False).graph.input[0].type.tensor_type.shape
    size = [dim.dim_value for dim in dims.dim][1:]
    return np.random.default_rng(seed).normal(size=(batch_size, *size)).astype(np.float32)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=REPO, help="a project whose compress ran")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--batches", type=int, default=8, help="batches timed per round")
    return parser.parse_args(argv)


def model_paths(project: Path) -> dict[str, Path]:
    paths = {variant: project / MODELS_DIR / f"{variant}.onnx" for variant in VARIANTS}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"run `dvc repro compress` first; missing {', '.join(missing)}")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        paths = model_paths(args.project)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    backbone, cores = checkpoint_backbone(args.project), available_cores()
    batch = input_batch(paths[REFERENCE_VARIANT], args.batch_size)
    runtimes = available_runtimes()
    runs = {
        (runtime, variant): make_run(paths[variant])
        for runtime, (make_run, _) in runtimes.items()
        for variant in VARIANTS
    }
    whole = median_milliseconds(runs, batch, args.rounds, args.batches)
    rows: list[dict[str, Any]] = []
    for runtime, (_, make_profiler) in runtimes.items():
        profilers = {variant: make_profiler(paths[variant]) for variant in VARIANTS}
        parts = profiled_part_times(profilers, batch, args.batches)
        whole_ms = {variant: whole[runtime, variant] for variant in VARIANTS}
        rows += part_rows(runtime, whole_ms, parts, backbone, cores)
    print(
        f"\n{backbone}, batch {args.batch_size}, {cores} CPU cores, ONNX Runtime "
        f"{ort.__version__}; ms per batch (whole model: median of {args.rounds} interleaved "
        "rounds, unprofiled; parts: profiled)"
    )
    print(format_table(rows, FIELDS))
    print(f"\nWrote {write_results(BENCHMARK, rows, FIELDS, RESULT_KEY)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
