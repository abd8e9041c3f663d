"""`kedro viz run`, offline, draws the eight stages as collapsible groups: the served page is
rendered in headless Chromium and its flowchart read back from the DOM."""

import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import chromium_path, dump_dom

from prodcls_pipeline.pipeline_registry import STAGES

REPO = Path(__file__).resolve().parents[2]
# The catalog's layers in the order the data flows (tests/framework/test_catalog_layers.py).
ORDERED_LAYERS = [
    "raw",
    "intermediate",
    "primary",
    "feature",
    "models",
    "model_output",
    "reporting",
]
DOCS_SCREENSHOT = REPO / "docs" / "kedro-viz.png"
SCREEN = (1600, 1000)
LOOPBACK = "127.0.0.1"
# Loading the project takes kedro-viz ~15 s on two cores; a cold first import, more.
STARTUP_TIMEOUT_S = 120
POLL_INTERVAL_S = 0.5
REQUEST_TIMEOUT_S = 2
STOP_TIMEOUT_S = 10
# The React app fetches the pipeline, lays the flowchart out and fades the nodes in.
RENDER_BUDGET_MS = 3_000
PRIME_BUDGET_MS = 100
# Nothing listens on port 1: kedro-viz's PyPI version check (HTTPS) fails at once instead of
# waiting on a network that drops packets, and the test never leaves the machine. Set in lower
# case, which wins over an HTTPS_PROXY from the environment.
REFUSING_PROXY = f"http://{LOOPBACK}:1"
# kedro-viz keeps its settings in the page origin's local storage under this key. Its tour of
# new features and its minimap would cover part of the flowchart in the screenshot.
VIZ_SETTINGS_KEY = "KedroViz"
VIZ_SETTINGS = {"showFeatureHints": False, "visible": {"miniMap": False}}
# The test's own requests to the server go direct, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not on PATH and could not be installed (see scripts/test.sh)")
    return path


class _SettingsPage(http.server.BaseHTTPRequestHandler):
    body = (
        f"<script>localStorage.setItem({json.dumps(VIZ_SETTINGS_KEY)}, "
        f"{json.dumps(json.dumps(VIZ_SETTINGS))})</script>"
    ).encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def _free_port_with_settings(profile: Path) -> int:
    """A free loopback port whose origin holds kedro-viz's settings in the Chromium `profile`.

    Local storage belongs to an origin, port included: a page served on the port, before
    kedro-viz takes it over, is the one way to write it without driving the browser.
    """
    server = http.server.HTTPServer((LOOPBACK, 0), _SettingsPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        dump_dom(f"http://{LOOPBACK}:{port}/", budget_ms=PRIME_BUDGET_MS, profile=profile)
    finally:
        server.shutdown()
        server.server_close()
    return port


def _answers(url: str) -> bool:
    try:
        with DIRECT.open(url, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    # `kedro viz run` serves from a child process that outlives it: stop the whole group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def viz(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The URL of `kedro viz run` serving the project, and the Chromium profile to load it in."""
    work = tmp_path_factory.mktemp("viz")
    profile = work / "chromium-profile"
    port = _free_port_with_settings(profile)
    url = f"http://{LOOPBACK}:{port}/"
    env = os.environ | {
        "KEDRO_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "https_proxy": REFUSING_PROXY,
    }
    log = work / "kedro-viz.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "kedro", "viz", "run", "--no-browser"]
            + ["--host", LOOPBACK, "--port", str(port)],
            # It reads the project and writes nothing into it: the repository itself will do.
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _answers(f"{url}api/main"):
            if process.poll() is not None:
                pytest.fail(f"kedro viz run exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"kedro viz run did not answer in {STARTUP_TIMEOUT_S} s:\n{log.read_text()}"
                )
            time.sleep(POLL_INTERVAL_S)
        yield url, profile
    finally:
        _stop(process)


class _FlowchartGroups(HTMLParser):
    """The labels of the flowchart's collapsed modular pipelines, in the order drawn."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[str] = []
        self._in_group = False
        self._in_label = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "g" and "pipeline-node" in (attributes.get("class") or "").split():
            self._in_group = attributes.get("data-node-type") == "modularPipeline"
        self._in_label = (
            self._in_group and tag == "text" and attributes.get("class") == "pipeline-node__text"
        )

    def handle_endtag(self, tag: str) -> None:
        self._in_label = False

    def handle_data(self, data: str) -> None:
        if self._in_label:
            self.labels.append(data.strip())


def test_the_stages_are_the_flowchart_groups(viz: tuple[str, Path], tmp_path: Path) -> None:
    url, profile = viz
    png = tmp_path / "kedro-viz.png"
    parser = _FlowchartGroups()
    parser.feed(
        dump_dom(url, size=SCREEN, budget_ms=RENDER_BUDGET_MS, profile=profile, png_path=png)
    )
    assert sorted(parser.labels) == sorted(STAGES)
    with DIRECT.open(f"{url}api/main", timeout=REQUEST_TIMEOUT_S) as response:
        layers = json.load(response)["layers"]
    # kedro-viz sends no layers when they form a cycle: then its layer view is off.
    assert layers == ORDERED_LAYERS
    if os.environ.get("PRODCLS_UPDATE_DOCS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(png, DOCS_SCREENSHOT)
