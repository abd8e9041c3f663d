"""Real servers on loopback for the tests: an S3-compatible store (moto's), PostgreSQL (Debian's)
and an MLflow tracking server on it. Each is started for a test and always stopped."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import command_env

# Importing mlflow and migrating a fresh database, or loading a model, on two busy cores.
STARTUP_SECONDS = 240
POSTGRES_USER = "postgres"
LOOPBACK = "127.0.0.1"
POSTGRES_BIN_GLOB = "usr/lib/postgresql/*/bin"  # under /
INSTALL_HINT = "scripts/test.sh installs Debian's postgresql when it runs as root"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_ready(url: str) -> Callable[[], bool]:
    """A readiness probe: `url` answers 200."""

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return answers


@contextmanager
def server_process(
    command: list[str],
    log_path: Path,
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> Iterator[subprocess.Popen]:
    """Run `command` (as `user`, when given) in a session of its own until `ready()`; on exit stop
    its whole process group, so the workers it forks stop with it."""
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"{command[0]} exited with {process.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"{command[0]} not ready in {STARTUP_SECONDS} s:\n{_tail(log_path)}")
            time.sleep(0.5)
        yield process
    finally:
        stop_group(process)


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-6000:]


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it when it has not ended in 30 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto's, in this process) on loopback; yields its endpoint.
    Clients need credentials in the environment: moto accepts any."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def postgres_bin() -> Path:
    """The folder of Debian's PostgreSQL server programs; skips the test where there is none."""
    initdb = shutil.which("initdb")
    found = [Path(initdb).resolve().parent] if initdb else sorted(Path("/").glob(POSTGRES_BIN_GLOB))
    if not found:
        pytest.skip(f"PostgreSQL is not installed ({INSTALL_HINT})")
    return found[-1]


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        pytest.skip(f"running as root and there is no {POSTGRES_USER!r} user ({INSTALL_HINT})")
    return POSTGRES_USER


def _accepts_connections(port: int, database: str) -> Callable[[], bool]:
    import psycopg2

    def accepts() -> bool:
        try:
            psycopg2.connect(host=LOOPBACK, port=port, user=POSTGRES_USER, dbname=database).close()
        except psycopg2.OperationalError:
            return False
        return True

    return accepts


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback (trust auth, no fsync); yields the SQLAlchemy
    URI of its `postgres` database (libpq's form: psycopg2 takes it as it is)."""
    programs = postgres_bin()
    user = _server_user()
    # Outside pytest's tmp folders, which are private to root: the server's user must reach it.
    cluster = Path(tempfile.mkdtemp(prefix="prodcls-pg-"))
    try:
        if user is not None:
            shutil.chown(cluster, user=user)
        data = cluster / "data"
        initdb = [str(programs / "initdb"), "-D", str(data), "-U", POSTGRES_USER]
        initdb += ["--auth=trust", "--no-sync", "--encoding=UTF8"]
        subprocess.run(
            ["runuser", "-u", user, "--", *initdb] if user else initdb,
            check=True,
            capture_output=True,
        )
        port = free_port()
        server = [str(programs / "postgres"), "-D", str(data), "-p", str(port)]
        server += ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={cluster}"]
        server += ["-c", "fsync=off"]
        with server_process(
            server, cluster / "server.log", _accepts_connections(port, "postgres"), user=user
        ):
            yield f"postgresql://{POSTGRES_USER}@127.0.0.1:{port}/postgres"
    finally:
        shutil.rmtree(cluster, ignore_errors=True)


def sqlalchemy_uri(database: str) -> str:
    """The SQLAlchemy URI of a PostgreSQL database URI, with the driver in the lock (psycopg2)."""
    return database.replace("postgresql://", "postgresql+psycopg2://", 1)


@contextmanager
def mlflow_server(backend_store_uri: str, artifacts: Path, log_path: Path) -> Iterator[str]:
    """`mlflow server` on loopback over `backend_store_uri` (a SQLAlchemy URI), serving the
    artifacts it stores under `artifacts`; yields its tracking URI."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri]
    command += ["--artifacts-destination", artifacts.as_uri(), "--serve-artifacts"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    url = f"http://127.0.0.1:{port}"
    with server_process(command, log_path, http_ready(f"{url}/health"), env=command_env()):
        yield url
