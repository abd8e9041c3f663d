"""`mlflow models serve` of the registered champion: photos in over HTTP, 400 for non-images."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from helpers import CHAMPION_URI, LABELS, champion_registry, sample_images

from prodcls_pipeline.core.tracking import TRACKING_URI_ENV

# Importing mlflow, loading the model and starting uvicorn on two busy cores.
STARTUP_SECONDS = 240
REQUEST_SECONDS = 60


@pytest.fixture(scope="module")
def registry(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with champion_registry(tmp_path_factory.mktemp("registry")) as uri:
        yield uri


@pytest.fixture(scope="module")
def server(registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of `mlflow models serve` for the champion; the server is always stopped."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    bin_dir = str(Path(sys.executable).parent)  # where `uvicorn`, which mlflow runs, lives
    env = {
        **os.environ,
        TRACKING_URI_ENV: registry,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION_URI]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        # A session of its own, so stopping it stops the uvicorn it starts too.
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log_path)
        yield url
    finally:
        _stop(process)


def test_two_photos_get_labels_and_probabilities(server: str) -> None:
    photos = sample_images(2)
    images = [base64.b64encode(path.read_bytes()).decode("ascii") for path in photos]
    body = {"dataframe_split": {"columns": ["image"], "data": [[image] for image in images]}}

    status, answer = _post(f"{server}/invocations", body)

    assert status == 200, answer
    predictions = answer["predictions"]
    expected = mlflow.pyfunc.load_model(CHAMPION_URI).predict(pd.DataFrame({"image": images}))
    assert [prediction["label"] for prediction in predictions] == expected["label"].tolist()
    assert all(prediction["label"] in LABELS for prediction in predictions)
    assert [prediction["probability"] for prediction in predictions] == pytest.approx(
        expected["probability"].tolist()
    )
    assert all(len(prediction["top_k"]) == len(LABELS) for prediction in predictions)


def test_top_k_is_a_request_param(server: str) -> None:
    image = base64.b64encode(sample_images(1)[0].read_bytes()).decode("ascii")
    body = {
        "dataframe_split": {"columns": ["image"], "data": [[image]]},
        "params": {"top_k": 1},
    }

    status, answer = _post(f"{server}/invocations", body)

    assert status == 200, answer
    assert len(answer["predictions"][0]["top_k"]) == 1


def test_a_non_image_is_a_400_with_a_readable_message(server: str) -> None:
    not_an_image = base64.b64encode(b"just some text").decode("ascii")
    body = {"dataframe_split": {"columns": ["image"], "data": [[not_an_image]]}}

    status, answer = _post(f"{server}/invocations", body)

    assert status == 400
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "image 0 (" in answer["message"]
    assert "not a decodable image" in answer["message"]
    assert "Traceback" not in answer["message"]


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_ready(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"The server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    pytest.fail(f"The server did not answer /ping in {STARTUP_SECONDS} s:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server's whole process group: the mlflow command and the uvicorn it started."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
