"""Load-gate suite: real tritonservers (the wheel's) on free ports, each serving one repository.

Servers for linear serve it alone (repos.linear_only), those for embed its pipeline alone (embed_only):
each skips the other's stubs (~10 s of load and ~1 GB on the 2-core box)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from repos import linear_only

from tritonops import settings
from tritonops.models import embedding, linear
from tritonops.serving.server import LocalServer, free_port

SHIPPED = settings.MODEL_REPOSITORY / linear.MODEL
EMBED_PIPELINE = (embedding.TOKENIZER, embedding.ENCODER, embedding.MODEL)


def embed_only(dest: Path, *, copied: tuple[str, ...] = ()) -> Path:
    """A repository at dest holding the shipped embed pipeline, each model a symlink to the shipped one;
    the models in copied get a folder of their own instead, for a test to change: its files copied,
    the folders in its version folder (the weights) symlinked."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in EMBED_PIPELINE:
        shipped = settings.MODEL_REPOSITORY / name
        if name not in copied:
            (dest / name).symlink_to(shipped)
            continue
        (dest / name / embedding.VERSION).mkdir(parents=True)
        shutil.copy(shipped / "config.pbtxt", dest / name / "config.pbtxt")
        for item in (shipped / embedding.VERSION).iterdir():
            if item.is_file():
                shutil.copy(item, dest / name / embedding.VERSION / item.name)
            elif item.name != "__pycache__":
                (dest / name / embedding.VERSION / item.name).symlink_to(item)
    return dest


def serve(repository: Path, log_path: Path) -> LocalServer:
    server = LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         host="127.0.0.1", log_path=log_path)
    return server.start()


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    """The shipped linear model, on its own server (the linear gate's PASS case)."""
    folder = tmp_path_factory.mktemp("shipped")
    server = serve(linear_only(folder / "repository"), folder / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory):
    """The shipped embed pipeline, on its own server (the embed gate's PASS case)."""
    folder = tmp_path_factory.mktemp("embed")
    server = serve(embed_only(folder / "repository"), folder / "server.log")
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
    shutil.copytree(SHIPPED, repo / linear.MODEL, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


@pytest.fixture
def lenient_thresholds(tmp_path) -> Path:
    """Thresholds no healthy server misses: tests must not depend on this machine's speed."""
    path = tmp_path / "thresholds.toml"
    path.write_text('[lenient]\np95_ms = 60000\nmin_rps = 1\nmax_failures = 0\nmin_rate_share = 0.5\n')
    return path


@pytest.fixture
def copy_of_embed(tmp_path) -> Path:
    """A temp repository holding the shipped embed pipeline whose encoder is a copy (its files copied,
    its weights symlinked), for tests that break it on purpose."""
    return embed_only(tmp_path / "embed-repo", copied=(embedding.ENCODER,))
