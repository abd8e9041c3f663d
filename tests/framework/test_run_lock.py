"""One run at a time: a `kedro run` beside a `dvc repro`, or two of either, and the second is
refused with a clear message before it touches any output; a killed holder blocks nothing."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import command_env, run

from benchmarks.common import copy_project_files
from prodcls_pipeline.framework.hooks import RunLockHook
from prodcls_pipeline.framework.run_lock import ProjectBusyError, hold_project_data

# The stage writes `data/started`, waits for the test's `release` file, then writes its output.
_STAGE = """
import pathlib, time
pathlib.Path("data/started").write_text("")
while not pathlib.Path("release").exists():
    time.sleep(0.05)
pathlib.Path("data/out.txt").write_text("done")
"""
_DVC_YAML = """
stages:
  slow:
    cmd: python stage.py
    deps: [stage.py]
    outs: [data/out.txt]
"""
WAIT_SECONDS = 60


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A git and DVC repository with one stage writing under `data/`."""
    run(tmp_path, "git", "init", "-q")
    run(tmp_path, "dvc", "init", "-q")
    (tmp_path / "data").mkdir()
    (tmp_path / "stage.py").write_text(_STAGE)
    (tmp_path / "dvc.yaml").write_text(_DVC_YAML)
    return tmp_path


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def hold_briefly(project: Path) -> None:
    with hold_project_data(project, "kedro run --pipeline ingest"):
        pass


def start(project: Path, *command: str) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=project,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_dvc_repro_beside_a_kedro_run_is_refused_before_it_writes(repository):
    (repository / "release").write_text("")

    with hold_project_data(repository, "kedro run --pipeline train"):
        refused = run(repository, "dvc", "repro", check=False)
        assert not (repository / "data" / "started").exists()

    assert refused.returncode != 0
    assert "is busy" in refused.stderr
    assert "kedro run --pipeline train" in refused.stderr
    run(repository, "dvc", "repro")
    assert (repository / "data" / "out.txt").read_text() == "done"


def test_a_kedro_run_beside_a_dvc_repro_is_refused_naming_it(repository):
    repro = start(repository, "dvc", "repro")
    try:
        wait_for(repository / "data" / "started", repro)
        with pytest.raises(ProjectBusyError, match="dvc repro") as refused:
            hold_briefly(repository)
        assert "wait for it to end, then run again" in str(refused.value)
    finally:
        (repository / "release").write_text("")
        output, _ = repro.communicate(timeout=WAIT_SECONDS)
    assert repro.returncode == 0, output
    hold_briefly(repository)


def test_a_second_dvc_repro_is_refused_and_the_first_completes(repository):
    first = start(repository, "dvc", "repro")
    try:
        wait_for(repository / "data" / "started", first)
        second = run(repository, "dvc", "repro", check=False)
    finally:
        (repository / "release").write_text("")
        output, _ = first.communicate(timeout=WAIT_SECONDS)

    assert second.returncode != 0
    assert "is busy" in second.stderr and "dvc repro" in second.stderr
    assert first.returncode == 0, output
    assert (repository / "data" / "out.txt").read_text() == "done"
    assert "didn't change" in run(repository, "dvc", "repro").stdout


def test_a_second_kedro_run_is_refused_and_a_killed_holder_blocks_nothing(repository):
    holder = start(
        repository,
        sys.executable,
        "-c",
        "import pathlib, time\n"
        "from prodcls_pipeline.framework.run_lock import hold_project_data\n"
        "with hold_project_data(pathlib.Path('.'), 'kedro run --pipeline split'):\n"
        "    pathlib.Path('held').write_text('')\n"
        "    time.sleep(600)\n",
    )
    wait_for(repository / "held", holder)
    with pytest.raises(ProjectBusyError, match="kedro run --pipeline split"):
        hold_briefly(repository)

    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=WAIT_SECONDS)
    (repository / "release").write_text("")
    after = run(repository, "dvc", "repro")
    assert "had been killed. Auto removed it from the lock file." in after.stderr + after.stdout
    assert (repository / "data" / "out.txt").read_text() == "done"


def test_a_refused_kedro_run_prints_one_short_message_and_logs_the_traceback(repository):
    hook = (
        "import pathlib\n"
        "from prodcls_pipeline.framework.hooks import RunLockHook\n"
        "RunLockHook().before_pipeline_run("
        "{'project_path': str(pathlib.Path.cwd()), 'pipeline_names': ['train']})\n"
    )
    with hold_project_data(repository, "dvc repro"):
        refused = run(repository, sys.executable, "-c", hook, check=False)

    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert lines[0].startswith("Stage 'train' failed: another `dvc repro` or `kedro run`")
    assert "Traceback (most recent" not in refused.stderr
    assert lines[-1] == "Traceback: logs/stages/train.log"


def test_a_stage_that_dvc_runs_takes_no_lock_of_its_own(repository, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "train")
    hook = RunLockHook()
    with hold_project_data(repository, "dvc repro"):
        hook.before_pipeline_run({"project_path": str(repository), "pipeline_names": ["train"]})
        hook.after_pipeline_run()


def test_kedro_run_in_the_project_beside_a_dvc_repro_stops_before_any_node(tmp_path):
    project = tmp_path / "project"
    copy_project_files(project)

    with hold_project_data(project, "dvc repro"):
        refused = run(project, "kedro", "run", "--pipelines", "ingest", check=False)

    assert refused.returncode == 1
    assert refused.stderr.splitlines()[0].startswith("Stage 'ingest' failed: another `dvc repro`")
    assert "(PID " in refused.stderr
    assert "Traceback (most recent" not in refused.stderr
    data_files = {path for path in (project / "data").rglob("*") if path.is_file()}
    assert data_files == {project / "data" / "01_raw" / "review_decisions.csv"}
