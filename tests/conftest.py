"""Fixtures shared by the whole test suite.

Every test runs with the repository root as working directory and without ``HBVBENCH_ROOT``
(the package finds its repository from there, :mod:`benchmark.repository`).

MLflow isolation: for the whole session ``MLFLOW_TRACKING_URI`` points at one SQLite file in
a temporary folder, so no test ever writes to the repository's ``mlflow.db``. The store's
tables are created (about 2 s) only when a test asks for ``mlflow_tracking_uri``; every test
shares it, so use a unique experiment name per test. Pass the URI to ``MlflowClient``
explicitly when reading back: MLflow keeps a process-global URI of its own.

``mlflow_server`` starts one real ``mlflow server`` (127.0.0.1, free port, SQLite backend
and served artifacts in a temporary folder) for the session, on first request, and stops it
at the end; ``use_mlflow_server`` points ``MLFLOW_TRACKING_URI`` at it for one test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmark.repository import ROOT_ENV
from tests.limits import SERVER_START_S
from tests.paths import REPO_ROOT

SERVER_STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 10.0


@pytest.fixture(scope="session", autouse=True)
def _work_in_the_repository() -> Iterator[None]:
    """Run every test with the repository as working directory, as a user runs hbvbench.

    The package finds its repository from the working directory; a developer's exported
    ``HBVBENCH_ROOT`` must not redirect the tests (nor the processes they start) elsewhere.
    """
    patch = pytest.MonkeyPatch()
    patch.delenv(ROOT_ENV, raising=False)
    patch.chdir(REPO_ROOT)
    try:
        yield
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Absolute path of the repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def reference_dir(repo_root: Path) -> Path:
    """``tests/reference``: outputs of the authors' code for basin 01022500."""
    return repo_root / "tests" / "reference"


@pytest.fixture(scope="session")
def camels_dir(repo_root: Path) -> Path:
    """The embedded real CAMELS-US folder (official layout, 35 basins)."""
    return repo_root / "data" / "camels_us"


# --------------------------------------------------------------------------------------
# MLflow: one SQLite store per session
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _mlflow_session_store_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Point MLflow at a per-session SQLite file for every test (nothing is created yet)."""
    db_path = tmp_path_factory.mktemp("mlflow_store") / "mlflow.db"
    uri = f"sqlite:///{db_path}"
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # offline: no usage pings
    try:
        yield uri
    finally:
        patch.undo()


def _empty_store_template(cache_dir: Path) -> Path:
    """An empty, fully migrated MLflow SQLite file, built once per MLflow version.

    Creating the tables takes ~2 s on an idle machine (10+ s on a busy one); copying a
    pristine file and opening it takes ~0.1 s. Kept across sessions beside pytest's
    temporary folders; written to a temporary name and renamed, so sessions never see
    half a file.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    template = cache_dir / f"mlflow-{mlflow.__version__}-empty.db"
    if not template.is_file():
        building = cache_dir / f"{template.name}.{os.getpid()}.tmp"
        MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments(max_results=1)
        os.replace(building, template)
    return template


@pytest.fixture(scope="session")
def mlflow_tracking_uri(_mlflow_session_store_uri: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Absolute ``sqlite:///`` URI of the session's MLflow store, its tables created.

    ``MLFLOW_TRACKING_URI`` is set to it for every test (unless a test overrides it);
    artifacts of experiments created through ``benchmark.tracking`` land in
    ``<store folder>/mlartifacts``.
    """
    from mlflow.tracking import MlflowClient

    db_path = Path(_mlflow_session_store_uri[len("sqlite:///"):])
    cache_dir = tmp_path_factory.getbasetemp().parent / "hbvbench-mlflow-template"
    cache_dir.mkdir(exist_ok=True)
    shutil.copyfile(_empty_store_template(cache_dir), db_path)
    MlflowClient(tracking_uri=_mlflow_session_store_uri).search_experiments(max_results=1)
    return _mlflow_session_store_uri


# --------------------------------------------------------------------------------------
# MLflow: a real tracking server
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server`` and plain-``urllib`` access to its REST API."""

    url: str
    backend_uri: str
    artifacts_dir: Path
    log_path: Path

    def api(self, endpoint: str, *, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> dict:
        """Call ``/api/2.0/mlflow/<endpoint>``: GET with ``query``, or POST ``body`` as JSON."""
        url = f"{self.url}/api/2.0/mlflow/{endpoint}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return json.loads(response.read().decode() or "{}")

    def log_tail(self, n_chars: int = 4000) -> str:
        """The end of the server's combined stdout/stderr."""
        return self.log_path.read_text(errors="replace")[-n_chars:] if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _ServerExited(Exception):
    """The server process ended before it answered its health check."""


SERVER_START_ATTEMPTS = 3
"""Starts tried on fresh ports: the free port found by binding port 0 may be taken by another
process before the server binds it (a race no test should lose on a busy machine)."""


def _wait_until_healthy(server: MlflowServer, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _ServerExited(f"mlflow server exited with code {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"mlflow server not healthy after {SERVER_START_S:.0f} s:\n{server.log_tail()}")


def _stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it was started as its own session), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, SERVER_STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its uvicorn worker belongs to the same group.
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    # Last resort: nothing should survive SIGKILL, but never leave the test session hanging.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on 127.0.0.1 for the session (started on first request).

    Backend: SQLite in a temporary folder; ``--serve-artifacts`` with
    ``--artifacts-destination`` in that folder. Stopped (SIGTERM, then SIGKILL after
    15 s) when the session ends.
    """
    root = tmp_path_factory.mktemp("mlflow_server")
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    # The GenAI job runner is a third process importing mlflow: halves the start-up time without it.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    failures: list[str] = []
    for attempt in range(SERVER_START_ATTEMPTS):
        port = _free_port()
        server = MlflowServer(
            url=f"http://127.0.0.1:{port}",
            backend_uri=f"sqlite:///{root / 'server.db'}",
            artifacts_dir=root / "artifacts",
            log_path=root / f"server-{attempt}.log",
        )
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", server.backend_uri,
            "--serve-artifacts", "--artifacts-destination", str(server.artifacts_dir),
        ]
        with open(server.log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            _wait_until_healthy(server, process)
        except _ServerExited as exc:
            failures.append(str(exc))
            _stop_process_group(process)
            continue
        except BaseException:
            _stop_process_group(process)
            raise
        try:
            yield server
        finally:
            _stop_process_group(process)
        return
    pytest.fail("\n\n".join(failures))


@pytest.fixture
def use_mlflow_server(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowServer]:
    """Point ``MLFLOW_TRACKING_URI`` at :func:`mlflow_server` for one test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    yield mlflow_server
    # mlflow.set_tracking_uri (called by benchmark.tracking.configure) keeps a process-global
    # URI; forget it so later tests follow the environment again.
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)
