"""`prodcls watch` as a real process on a real tiny DVC project.

The project's one stage depends on the drops folder; it records which drop folders it sees (and
which of them are landed), their files, and when it started and ended, then sleeps a moment so
runs have a measurable extent. A drop holding a FAIL file makes it fail.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from prodcls_pipeline.cli import main
from prodcls_pipeline.watching.journal import read_records
from prodcls_pipeline.watching.listing import READY_MARKER
from prodcls_pipeline.watching.lock import RunLock
from prodcls_pipeline.watching.runner import FAILED, INTERRUPTED, TRAINED

QUIET_S = 1.5
POLL_S = 0.1
# Shorter than the quiet period, so a slow copy never looks finished halfway.
COPY_GAP_S = 0.4
TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 8.0
# How long the stage takes: long enough for two runs' intervals to be told apart.
STAGE_S = 0.5
RUNS = Path("data/08_reporting/runs.jsonl")
STAGE_PID = Path("stage.pid")
STAGE = """\
import json, os, sys, time
from pathlib import Path

start = time.time()
Path("stage.pid").write_text(str(os.getpid()))
drops = Path("drops")
folders = sorted(p.name for p in drops.iterdir() if p.is_dir() and not p.name.startswith("."))
landed = [name for name in folders if (drops / f"{name}.dvc").is_file()]
files = {name: sorted(str(f.relative_to(drops / name)) for f in (drops / name).rglob("*")
                      if f.is_file()) for name in folders}
time.sleep(float(os.environ.get("STAGE_SECONDS", "1")))
out = Path("data/08_reporting/runs.jsonl")
with out.open("a") as stream:
    record = {"folders": folders, "landed": landed, "files": files, "start": start}
    stream.write(json.dumps({**record, "end": time.time()}) + "\\n")
if any((drops / name / "FAIL").exists() for name in folders):
    sys.exit("stage failed: a drop holds a FAIL file")
"""
DVC_YAML = {
    "stages": {
        "record": {
            "cmd": "python record.py",
            "deps": ["drops", "record.py"],
            "outs": [{str(RUNS): {"cache": False, "persist": True}}],
        }
    }
}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny project, git-committed and `dvc init`ed once: each test copies it."""
    root = tmp_path_factory.mktemp("template") / "project"
    (root / "drops").mkdir(parents=True)
    (root / RUNS).parent.mkdir(parents=True)
    (root / "record.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    _git(root, "init", "-q")
    _git(root, "config", "user.name", "test")
    _git(root, "config", "user.email", "test@example.com")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "tiny project")
    return root


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "project", symlinks=True))


class Watch:
    """A running `prodcls watch`: its output (a file, read while it runs) and exit."""

    def __init__(self, root: Path, args: list[str], env: dict[str, str]) -> None:
        self.root = root
        self.output_path = root.parent / f"watch-{time.monotonic_ns()}.out"
        with self.output_path.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "prodcls_pipeline", "watch", "drops", *args],
                cwd=root,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.output_path.read_text()

    def says(self, text: str) -> bool:
        return text in self.output()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def watching(root: Path, *args: str, stage_seconds: float = STAGE_S) -> Iterator[Watch]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env |= {
        "KEDRO_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "STAGE_SECONDS": str(stage_seconds),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    }
    options = ["--quiet-period", str(QUIET_S), "--poll", str(POLL_S), *args]
    watch = Watch(root, options, env)
    try:
        wait_for(lambda: watch.says("watching") or watch.process.poll() is not None)
        yield watch
    finally:
        if watch.process.poll() is None:
            watch.process.kill()
            watch.process.wait()


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(0.05)


def runs(root: Path) -> list[dict]:
    path = root / RUNS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def write_drop(folder: Path, files: int, ready: bool = False, fail: bool = False) -> None:
    for number in range(files):
        path = folder / "Lime" / f"{number}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"jpeg bytes %d" % number)
    if fail:
        (folder / "FAIL").write_text("this drop breaks the stage\n")
    if ready:
        (folder / READY_MARKER).touch()


def test_a_drop_copied_slowly_is_landed_only_once_complete(project: Path) -> None:
    drop = project / "drops" / "week-1"
    with watching(project) as watch:
        for number in range(5):
            path = drop / "Lime" / f"{number}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"jpeg bytes %d" % number)
            time.sleep(COPY_GAP_S)
            assert not (project / "drops" / "week-1.dvc").exists(), f"landed after {number + 1}"
            assert not runs(project)
        last_file = time.time() - COPY_GAP_S
        wait_for(lambda: len(read_records(project)) == 1)

        [run] = runs(project)
        assert run["landed"] == ["week-1"]
        assert run["files"]["week-1"] == [f"Lime/{number}.jpg" for number in range(5)]
        assert run["start"] >= last_file + QUIET_S
        [record] = read_records(project)
        assert record["outcome"] == TRAINED and record["repro_status"] == 0
        assert (project / "drops" / "week-1.dvc").is_file()
        assert watch.says("week-1: seen, waiting for it to settle")
        assert watch.says("week-1: complete (settled)")
        assert watch.says("week-1: trained")
        assert watch.process.poll() is None, "the watcher goes on after a run"


def test_a_ready_marker_skips_the_quiet_period(project: Path) -> None:
    with watching(project, "--quiet-period", "600") as watch:
        marked = time.time()
        write_drop(project / "drops" / "week-2", files=2, ready=True)
        wait_for(lambda: len(read_records(project)) == 1)

        [run] = runs(project)
        assert run["landed"] == ["week-2"] and run["start"] - marked < TIMEOUT_S
        assert READY_MARKER in run["files"]["week-2"], "the marker stays: raw data is untouched"
        assert watch.says("week-2: complete (marker)")


def test_two_drops_arriving_together_give_two_runs_one_after_the_other(
    project: Path, tmp_path: Path
) -> None:
    staging = tmp_path / "incoming"
    for name in ["drop-b", "drop-a"]:
        # No marker: both settle together, whatever poll sees the first rename.
        write_drop(staging / name, files=2)
    with watching(project):
        for name in ["drop-b", "drop-a"]:
            (staging / name).rename(project / "drops" / name)
        wait_for(lambda: len(read_records(project)) == 2)

    first, second = runs(project)
    # One drop landed per run, in drop-id order, and the second run starts after the first ends.
    assert (first["landed"], second["landed"]) == (["drop-a"], ["drop-a", "drop-b"])
    assert first["end"] <= second["start"]
    records = read_records(project)
    assert [record["drop"] for record in records] == ["drop-a", "drop-b"]
    assert records[0]["finished"] <= records[1]["started"]
    assert all(record["outcome"] == TRAINED for record in records)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_an_idle_watcher_with_status_0(project: Path, signum: int) -> None:
    with watching(project) as watch:
        assert watch.stop(signum) == 0
        assert watch.says(f"stopped on {signal.Signals(signum).name}")
        assert "Traceback" not in watch.output()


def test_sigterm_during_a_run_stops_the_run_and_the_watcher(project: Path) -> None:
    with watching(project, stage_seconds=TIMEOUT_S) as watch:
        write_drop(project / "drops" / "week-3", files=1, ready=True)
        pid_file = project / STAGE_PID
        wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip() != "")
        stage_pid = int(pid_file.read_text())
        stopped = time.monotonic()
        assert watch.stop() == 0
        assert time.monotonic() - stopped < STOP_TIMEOUT_S

        [record] = read_records(project)
        assert record["outcome"] == INTERRUPTED and record["repro_status"] != 0
        # The stage's own KeyboardInterrupt is streamed; the watcher itself shows none.
        after_run = watch.output().split("week-3: interrupted")[1]
        assert "Traceback" not in after_run and "stopped on SIGTERM" in after_run
        assert not runs(project), "the stage was stopped before it finished"
        with pytest.raises(ProcessLookupError):
            os.kill(stage_pid, 0)


def test_commit_commits_a_trained_drop_and_not_a_failed_one(project: Path) -> None:
    with watching(project, "--commit") as watch:
        write_drop(project / "drops" / "good", files=2, ready=True)
        wait_for(lambda: len(read_records(project)) == 1)
        assert _git(project, "log", "-1", "--format=%s").strip() == "prodcls watch: drop good"
        committed = _git(project, "show", "--name-only", "--format=", "HEAD").split()
        assert {"drops/good.dvc", "drops/.gitignore", "dvc.lock", str(RUNS)} <= set(committed)
        good_commit = _git(project, "rev-parse", "HEAD")

        write_drop(project / "drops" / "kaput", files=1, fail=True, ready=True)
        wait_for(lambda: len(read_records(project)) == 2)
        failed = read_records(project)[1]
        assert failed["outcome"] == FAILED and failed["repro_status"] != 0 and not failed["commit"]
        assert any("a drop holds a FAIL file" in line for line in failed["tail"])
        assert "removes the drop" in failed["message"]
        assert _git(project, "rev-parse", "HEAD") == good_commit, "nothing committed"
        assert "?? drops/kaput.dvc" in _git(project, "status", "--porcelain")
        assert (project / "drops" / "kaput" / "FAIL").is_file(), "raw data is never removed"
        assert watch.says("kaput: failed")
        assert watch.process.poll() is None, "a failed run does not stop the watcher"


def test_once_waits_for_the_lock_then_handles_every_complete_drop(project: Path) -> None:
    write_drop(project / "drops" / "b-plain", files=1)
    write_drop(project / "drops" / "a-marked", files=1, ready=True)
    lock = RunLock(project)
    assert lock.acquire()
    try:
        with watching(project, "--once") as watch:
            wait_for(lambda: watch.says("is running a drop"))
            assert watch.says(f"pid {os.getpid()}")
            assert not (project / "drops" / "a-marked.dvc").exists()
            lock.release()
            assert watch.process.wait(timeout=TIMEOUT_S) == 0
    finally:
        lock.release()

    assert [record["drop"] for record in read_records(project)] == ["a-marked", "b-plain"]
    assert [run["landed"] for run in runs(project)] == [["a-marked"], ["a-marked", "b-plain"]]


def test_watch_needs_a_drops_folder_inside_a_dvc_repository(tmp_path: Path, capsys) -> None:
    assert main(["watch", str(tmp_path)]) == 1
    assert "not inside a DVC repository" in capsys.readouterr().err
    assert main(["watch", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
