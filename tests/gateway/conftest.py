"""Gateway suite: this machine's HAProxy (Debian's package) rendered from gateway/haproxy.cfg.j2, in
front of real tritonservers (the wheel's) on free 127.0.0.1 ports. No Docker needed; without
haproxy the tests skip with the reason (CI=true: fail)."""
from __future__ import annotations

from pathlib import Path

import pytest
from ci_policy import skip_or_fail

from tritonops import gateway, settings
from tritonops.server import LocalServer, free_port

# The slowloris test waits this long; production keeps versions.env's GATEWAY_TIMEOUT_REQUEST.
REQUEST_TIMEOUT_S = 2


def serve(log_path: Path) -> LocalServer:
    return LocalServer(settings.MODEL_REPOSITORY, http_port=free_port(), grpc_port=free_port(),
                       metrics_port=free_port(), host="127.0.0.1", log_path=log_path).start()


def backend(name: str, server: LocalServer) -> gateway.Backend:
    return gateway.Backend(name, "127.0.0.1", server.ports["http"], server.ports["grpc"], server.ports["metrics"])


def start_gateway(backends: list[gateway.Backend], workdir: Path, **kwargs) -> gateway.LocalGateway:
    values = {**settings.versions(), "GATEWAY_TIMEOUT_REQUEST": f"{REQUEST_TIMEOUT_S}s"}
    ports = {k: free_port() for k in ("http", "grpc", "metrics", "stats")}
    return gateway.LocalGateway(backends, workdir, ports, values=values, **kwargs).start()


@pytest.fixture(scope="session")
def haproxy() -> str:
    try:
        return gateway.haproxy_binary()
    except gateway.GatewayError as exc:
        skip_or_fail(str(exc))


@pytest.fixture(scope="module")
def replicas(haproxy, tmp_path_factory):
    """Two tritonservers serving model_repository, for one module."""
    work = tmp_path_factory.mktemp("replicas")
    servers = []
    try:
        for name in ("a", "b"):
            servers.append(serve(work / f"triton-{name}.log"))
        yield dict(zip(("a", "b"), servers))
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def gw(replicas, tmp_path_factory):
    """The gateway over both replicas, TLS and API keys off (the defaults)."""
    proxy = start_gateway([backend(n, s) for n, s in replicas.items()], tmp_path_factory.mktemp("gateway"))
    yield proxy
    proxy.stop()
