#!/usr/bin/env python
"""The packaged model end to end on JPEG bytes, through every way it is served, beside the model
alone.

Paths, each at batch 1 and 32 (a request is a batch of JPEG files' bytes: decode, resize,
normalise, ONNX Runtime):
- `predict_cli`: `prodcls predict FILE...`, one command per request (process start and model
  load included: what a shell user waits for);
- `pyfunc`: the registered champion loaded once in this process (`mlflow.pyfunc.load_model`);
- `serve`: `mlflow models serve` of the champion, requests over loopback HTTP (base64 JSON);
- `onnxruntime`: the deployed variant's ONNX model alone on a preprocessed batch, with the
  package's session settings: the ceiling the others are measured against (`model_only_ips`).

Speed depends on the architecture, the input size and the photos' size, not on the weights: the
bundled sample's run times as the full dataset's; its photos are downscaled, so `--images` can
point at full-size ones. Without `--project` the benchmark runs `dvc repro` on the bundled sample
in a throw-away copy first (about 3 minutes); `--project` takes any project whose package stage
has run (its MLflow store holds the champion).

    python -m benchmarks.inference [--project DIR] [--images DIR] [--requests 16] [--cli-requests 3]
"""

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from tqdm import tqdm

from benchmarks.common import (
    DROPS_DIR,
    REPO,
    StageFailed,
    dataset_label,
    format_table,
    project_with_dataset,
    write_results,
)
from benchmarks.int8_speedup import MODELS_DIR, input_batch
from prodcls_pipeline.core.numbers import round_measure
from prodcls_pipeline.core.tracking import TRACKING_URI_ENV, set_tracking, tracking_uri
from prodcls_pipeline.runtime.sessions import available_cores, create_session

BENCHMARK = "inference"
FIELDS = ("path", "variant", "batch", "ips", "p50_ms", "p95_ms", "model_only_ips")
RESULT_KEY = ("path", "variant", "batch")
BATCHES = (1, 32)
CHAMPION = "models:/prodcls@champion"
COMPRESSION_REPORT = Path("data/08_reporting/compression_report.json")
SAMPLE_DATASET = REPO / "sample" / "grocery-store-mini"
WARMUP_REQUESTS = 2
SERVER_STARTUP_S = 240
REQUEST_TIMEOUT_S = 120
# The end-to-end target of the performance issue: at batch 32, this share of model-only speed.
E2E_TARGET_SHARE = 0.7
_MILLISECONDS = 1000.0

Request = Callable[[list[Path]], object]


def jpeg_files(folder: Path) -> list[Path]:
    files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise FileNotFoundError(f"no JPEG files under {folder}")
    return files


def batches_of(files: list[Path], batch: int, count: int) -> list[list[Path]]:
    """`count` requests of `batch` files each, cycling through `files` in order."""
    return [
        [files[(start + i) % len(files)] for i in range(batch)]
        for start in range(0, count * batch, batch)
    ]


def timed(request: Request, requests: list[list[Path]], label: str) -> tuple[float, list[float]]:
    """(images per second, seconds per request) over `requests`, after warm-up requests."""
    for files in requests[:WARMUP_REQUESTS]:
        request(files)
    seconds = []
    for files in tqdm(requests, desc=label, unit="request", leave=False):
        started = time.perf_counter()
        request(files)
        seconds.append(time.perf_counter() - started)
    return sum(map(len, requests)) / sum(seconds), seconds


def base64_images(files: list[Path]) -> list[str]:
    return [base64.b64encode(path.read_bytes()).decode("ascii") for path in files]


def pyfunc_request(project: Path) -> Request:
    set_tracking(project_root=project)
    model = mlflow.pyfunc.load_model(CHAMPION)
    return lambda files: model.predict(pd.DataFrame({"image": base64_images(files)}))


def cli_request(project: Path, environment: dict[str, str]) -> Request:
    def request(files: list[Path]) -> None:
        command = ["prodcls", "predict", *map(str, files), "--json"]
        subprocess.run(command, cwd=project, env=environment, check=True, capture_output=True)

    return request


def model_only_request(model: Path, batch: int) -> Request:
    session = create_session(model)
    inputs = {session.get_inputs()[0].name: input_batch(model, batch)}
    return lambda files: session.run(None, inputs)


def serve_request(url: str) -> Request:
    def request(files: list[Path]) -> None:
        body = {
            "dataframe_split": {"columns": ["image"], "data": [[i] for i in base64_images(files)]}
        }
        http = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(http, timeout=REQUEST_TIMEOUT_S) as response:
            response.read()

    return request


class ModelServer:
    """`mlflow models serve` of the champion on a free loopback port, in a process group of its
    own (stopping it stops the uvicorn it starts)."""

    def __init__(self, environment: dict[str, str], log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION]
        command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        with log.open("wb") as stream:
            self.process = subprocess.Popen(
                command,
                env=environment,
                stdout=stream,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.log = log

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + SERVER_STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=5):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        raise RuntimeError(f"mlflow models serve not ready in {SERVER_STARTUP_S} s")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)


def row(
    path: str, variant: str, batch: int, ips: float, seconds: list[float], ceiling: float
) -> dict[str, Any]:
    quantiles = (
        statistics.quantiles(seconds, n=20, method="inclusive")
        if len(seconds) > 1
        else seconds * 19
    )
    return {
        "path": path,
        "variant": variant,
        "batch": batch,
        "ips": round_measure(ips),
        "p50_ms": round_measure(statistics.median(seconds) * _MILLISECONDS),
        "p95_ms": round_measure(quantiles[18] * _MILLISECONDS),
        "model_only_ips": round_measure(ceiling),
    }


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, help="a project whose package stage has run")
    parser.add_argument(
        "--images", type=Path, help="JPEG photos to send (default: the project's drops)"
    )
    parser.add_argument(
        "--requests", type=int, default=16, help="timed requests per path and batch"
    )
    parser.add_argument(
        "--cli-requests", type=int, default=3, help="timed `prodcls predict` commands"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.project is not None:
        return measure(args, args.project.resolve())
    with project_with_dataset(SAMPLE_DATASET, dataset_label(SAMPLE_DATASET), keep=False) as copy:
        try:
            copy.run("repro", "dvc", "repro")
        except StageFailed as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return measure(args, copy.root)


def measure(args: argparse.Namespace, project: Path) -> int:
    report = project / COMPRESSION_REPORT
    if not report.is_file():
        print(f"error: run `dvc repro` in {project} first; {report} is missing", file=sys.stderr)
        return 2
    variant = json.loads(report.read_text())["deployable"]
    files = jpeg_files(args.images or project / DROPS_DIR)
    environment = {**os.environ, TRACKING_URI_ENV: tracking_uri(project)}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="prodcls-inference-") as scratch:
        server = ModelServer(environment, Path(scratch) / "serve.log")
        try:
            server.wait_until_ready()
            pyfunc = pyfunc_request(project)
            for batch in BATCHES:
                requests = batches_of(files, batch, args.requests)
                ceiling, model_seconds = timed(
                    model_only_request(project / MODELS_DIR / f"{variant}.onnx", batch),
                    requests,
                    f"onnxruntime b{batch}",
                )
                paths: dict[str, tuple[Request, list[list[Path]]]] = {
                    "predict_cli": (
                        cli_request(project, environment),
                        requests[: args.cli_requests],
                    ),
                    "pyfunc": (pyfunc, requests),
                    "serve": (serve_request(server.url), requests),
                }
                for path, (request, chosen) in paths.items():
                    ips, seconds = timed(request, chosen, f"{path} b{batch}")
                    rows.append(row(path, variant, batch, ips, seconds, ceiling))
                rows.append(row("onnxruntime", variant, batch, ceiling, model_seconds, ceiling))
        finally:
            server.stop()
    sizes = np.array([path.stat().st_size for path in files]) / 1024
    print(
        f"\n{variant} model, {available_cores()} CPU cores, {len(files)} JPEG files "
        f"(median {np.median(sizes):.0f} KiB) from {args.images or project / DROPS_DIR}; "
        f"{args.requests} timed requests per path and batch ({args.cli_requests} for predict_cli)"
    )
    print(format_table(rows, FIELDS))
    for result in rows:
        if result["batch"] == max(BATCHES) and result["path"] in ("pyfunc", "serve"):
            share = result["ips"] / result["model_only_ips"]
            verdict = "meets" if share >= E2E_TARGET_SHARE else "misses"
            print(
                f"{result['path']} at batch {result['batch']}: {share:.0%} of model-only "
                f"({verdict} the {E2E_TARGET_SHARE:.0%} target)"
            )
    print(f"\nWrote {write_results(BENCHMARK, rows, FIELDS, RESULT_KEY)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
