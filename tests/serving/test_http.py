"""`mlflow models serve` of the registered champion: photos in over HTTP, 400 for non-images and
for images beyond the package's limits, which the server never decodes."""

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import psutil
import pytest
from helpers import (
    CHAMPION_URI,
    LABELS,
    PACKAGE_LIMITS,
    champion_registry,
    declared_png,
    sample_images,
)
from servers import free_port, http_ready, server_process

from prodcls_pipeline.core.tracking import TRACKING_URI_ENV

REQUEST_SECONDS = 60
MIB = 2**20
LOOPBACK = {"127.0.0.1", "::1"}


@pytest.fixture(scope="module")
def registry(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with champion_registry(tmp_path_factory.mktemp("registry")) as uri:
        yield uri


@pytest.fixture(scope="module")
def serving(
    registry: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, subprocess.Popen]]:
    """The base URL of `mlflow models serve` for the champion, and its process (the leader of
    the server's process group); the server is always stopped."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    bin_dir = str(Path(sys.executable).parent)  # where `uvicorn`, which mlflow runs, lives
    env = {
        **os.environ,
        TRACKING_URI_ENV: registry,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION_URI]
    # No --host: the default must keep the server on loopback (test below).
    command += ["--env-manager", "local", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    with server_process(command, log_path, http_ready(f"{url}/ping"), env=env) as process:
        yield url, process


@pytest.fixture(scope="module")
def server(serving: tuple[str, subprocess.Popen]) -> str:
    """The base URL of the served champion."""
    return serving[0]


def test_by_default_the_server_listens_on_loopback_only(
    serving: tuple[str, subprocess.Popen],
) -> None:
    _, process = serving
    listening = [
        connection.laddr.ip
        for pid in _group_pids(process.pid)
        for connection in psutil.Process(pid).net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    ]
    assert listening and set(listening) <= LOOPBACK, listening


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


def test_a_server_path_is_a_400_and_the_file_is_never_read(server: str) -> None:
    """The server runs where the client cannot look: a path it names must not be read."""
    path = str(sample_images(1)[0].resolve())
    body = {"dataframe_split": {"columns": ["image"], "data": [[path]]}}

    status, answer = _post(f"{server}/invocations", body)

    assert status == 400, answer
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "the served model reads no files" in answer["message"]
    image = base64.b64encode(sample_images(1)[0].read_bytes()).decode("ascii")
    again = {"dataframe_split": {"columns": ["image"], "data": [[image]]}}
    assert _post(f"{server}/invocations", again)[0] == 200


def test_an_oversized_body_is_a_400_and_the_server_keeps_answering(server: str) -> None:
    """One item of a byte more than the package's limit (ingest.max_source_bytes): refused
    before Pillow opens it."""
    too_large = PACKAGE_LIMITS.max_bytes + 1
    payload = base64.b64encode(b"\xff\xd8\xff" + bytes(too_large - 3)).decode("ascii")
    body = {"dataframe_split": {"columns": ["image"], "data": [[payload]]}}

    status, answer = _post(f"{server}/invocations", body)

    assert status == 400, answer
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "image 0 (" in answer["message"]
    assert answer["message"].endswith(
        f"file too large ({too_large} bytes > {PACKAGE_LIMITS.max_bytes})"
    )
    image = base64.b64encode(sample_images(1)[0].read_bytes()).decode("ascii")
    again = {"dataframe_split": {"columns": ["image"], "data": [[image]]}}
    assert _post(f"{server}/invocations", again)[0] == 200


@pytest.mark.parametrize(
    ("width", "height", "reason"),
    [
        (8000, 8000, "too many pixels (8000×8000 > 40000000)"),
        (400_000, 99, "aspect ratio too extreme (400000×99, 4040.4:1 > 20:1)"),
    ],
)
def test_an_image_beyond_the_limits_is_a_400_and_never_decoded(
    serving: tuple[str, subprocess.Popen], width: int, height: int, reason: str
) -> None:
    """Complete, valid PNGs of tens of KB: decoding either costs the server over 150 MB."""
    url, process = serving
    image = base64.b64encode(declared_png(width, height, complete=True)).decode("ascii")
    body = {"dataframe_split": {"columns": ["image"], "data": [[image]]}}

    resident = _reset_peak_memory(process.pid)
    status, answer = _post(f"{url}/invocations", body)
    growth = _peak_memory(process.pid) - resident

    assert status == 400, answer
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "image 0 (" in answer["message"] and answer["message"].endswith(reason)
    assert growth < 32 * MIB, f"the server's peak memory grew by {growth / MIB:.0f} MiB"


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _group_pids(group: int) -> list[int]:
    """The processes of a process group (the mlflow command and the uvicorn it runs)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the command name in parentheses: state, parent, process group, ...
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process has just exited
            continue
        if int(fields[2]) == group:
            pids.append(int(stat.parent.name))
    return pids


def _memory(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no {field} in /proc/{pid}/status")


def _reset_peak_memory(group: int) -> int:
    """Reset the peak resident memory of the group's processes (Linux clear_refs); returns
    their resident memory now."""
    for pid in _group_pids(group):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return sum(_memory(pid, "VmRSS") for pid in _group_pids(group))


def _peak_memory(group: int) -> int:
    """The group's peak resident memory since the last reset."""
    return sum(_memory(pid, "VmHWM") for pid in _group_pids(group))
