"""Headless Chromium for tests: a page's rendered DOM, or a screenshot of it.

Debian's `chromium` binary is driven by its own command-line switches, one process per page: a
test that loads one page needs no WebDriver, so the suite stays free of selenium and playwright.
The browser resolves no host but the loopback one, so a page that links fonts or scripts on the
internet renders from what it has, as it would offline, and never waits on the network.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

# Debian's package and binary name (scripts/test.sh installs it).
CHROMIUM = "chromium"
# A page's scripts get this much virtual time to render before the DOM or the screenshot is
# taken; virtual time stands still while requests are in flight, so slow responses do not eat it.
DEFAULT_BUDGET_MS = 5_000
DEFAULT_SIZE = (1600, 1000)
# Wall-clock limit on one Chromium process: start-up, the page's requests and the budget.
PROCESS_TIMEOUT_S = 60
# Every host but the loopback one fails to resolve, at once.
OFFLINE_HOST_RULES = "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"


def chromium_path() -> str | None:
    """The Chromium binary on PATH, or None when there is none."""
    return shutil.which(CHROMIUM)


def _url(url_or_file: str | Path) -> str:
    return url_or_file.resolve().as_uri() if isinstance(url_or_file, Path) else url_or_file


def _run_chromium(
    url_or_file: str | Path,
    action: list[str],
    size: tuple[int, int],
    budget_ms: int,
    profile: Path | None,
) -> subprocess.CompletedProcess:
    binary = chromium_path()
    if binary is None:
        raise FileNotFoundError(f"{CHROMIUM} is not on PATH")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as fresh:
        command = [
            binary,
            "--headless",
            # Containers run tests as root, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            # A container's /dev/shm is often too small for Chromium's shared memory.
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            # Its own profile: no state from, or into, the user's browser or another test.
            f"--user-data-dir={profile or fresh}",
            f"--host-resolver-rules={OFFLINE_HOST_RULES}",
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms}",
            *action,
            _url(url_or_file),
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"chromium exited with {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def _screenshot_switch(png_path: Path) -> str:
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.unlink(missing_ok=True)
    return f"--screenshot={png_path.resolve()}"


def _check_screenshot(png_path: Path, result: subprocess.CompletedProcess) -> None:
    if not png_path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {png_path}:\n{result.stderr[-4000:]}")


def dump_dom(
    url_or_file: str | Path,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    budget_ms: int = DEFAULT_BUDGET_MS,
    profile: Path | None = None,
    png_path: Path | None = None,
) -> str:
    """The page's DOM as HTML once its scripts have had `budget_ms` of virtual time; with
    `png_path`, a screenshot of that same render too (one page load instead of two).

    `profile` is a Chromium user-data folder to keep state (local storage) across calls; by
    default each call starts from a fresh one.
    """
    action = ["--dump-dom"] + ([_screenshot_switch(png_path)] if png_path else [])
    result = _run_chromium(url_or_file, action, size, budget_ms, profile)
    if png_path:
        _check_screenshot(png_path, result)
    return result.stdout


def screenshot(
    url_or_file: str | Path,
    png_path: Path,
    width: int = DEFAULT_SIZE[0],
    height: int = DEFAULT_SIZE[1],
    *,
    budget_ms: int = DEFAULT_BUDGET_MS,
    profile: Path | None = None,
) -> Path:
    """A `width` × `height` PNG of the page's viewport at `png_path`, rendered like `dump_dom`."""
    action = [_screenshot_switch(png_path)]
    _check_screenshot(
        png_path, _run_chromium(url_or_file, action, (width, height), budget_ms, profile)
    )
    return png_path
