"""Load-gate suite: real tritonservers (the wheel's) on free ports, each serving one repository."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tritonops import settings
from tritonops.server import LocalServer, free_port

SHIPPED = settings.MODEL_REPOSITORY / settings.MODEL_NAME


def serve(repository: Path, log_path: Path) -> LocalServer:
    server = LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         host="127.0.0.1", log_path=log_path)
    return server.start()


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    """model_repository as shipped, on its own server (the gate's PASS case)."""
    server = serve(settings.MODEL_REPOSITORY, tmp_path_factory.mktemp("shipped") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def serve_repo(tmp_path):
    """Factory: serve a repository on free ports; every server it started is stopped at the end."""
    servers = []

    def start(repository: Path) -> LocalServer:
        servers.append(serve(repository, tmp_path / f"server{len(servers)}.log"))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def copy_of_shipped(tmp_path) -> Path:
    """A temp repository holding a copy of the shipped model, for tests that break it on purpose."""
    repo = tmp_path / "repo"
    shutil.copytree(SHIPPED, repo / settings.MODEL_NAME, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


@pytest.fixture
def lenient_thresholds(tmp_path) -> Path:
    """Thresholds no healthy server misses: tests must not depend on this machine's speed."""
    path = tmp_path / "thresholds.toml"
    path.write_text('[lenient]\np95_ms = 60000\nmin_rps = 1\nmax_failures = 0\nmin_rate_share = 0.5\n')
    return path
