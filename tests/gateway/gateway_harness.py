"""Starting the gateway suite's parts: wheel tritonservers and this machine's HAProxy in front of
them. Test modules import these by name (a helper in conftest.py is ambiguous when several suites
run in one session)."""
from __future__ import annotations

from pathlib import Path

from repos import linear_only

from tritonops import settings
from tritonops.stack import gateway
from tritonops.serving.server import LocalServer, free_port

# The slowloris test waits this long; production keeps versions.env's GATEWAY_TIMEOUT_REQUEST.
REQUEST_TIMEOUT_S = 2


def serve(log_path: Path) -> LocalServer:
    """A tritonserver serving linear only: the gateway's behaviour does not depend on the models."""
    repository = linear_only(log_path.with_suffix(".repository"))
    return LocalServer(repository, http_port=free_port(), grpc_port=free_port(),
                       metrics_port=free_port(), host="127.0.0.1", log_path=log_path).start()


def backend(name: str, server: LocalServer) -> gateway.Backend:
    return gateway.Backend(name, "127.0.0.1", server.ports["http"], server.ports["grpc"], server.ports["metrics"])


def start_gateway(backends: list[gateway.Backend], workdir: Path, **kwargs) -> gateway.LocalGateway:
    """The gateway over backends; its health check from kwargs' repository, by default serve()'s (linear only)."""
    values = {**settings.versions(), "GATEWAY_TIMEOUT_REQUEST": f"{REQUEST_TIMEOUT_S}s"}
    ports = {k: free_port() for k in ("http", "grpc", "metrics", "stats")}
    kwargs.setdefault("repository", linear_only(workdir.with_name(workdir.name + ".repository")))
    return gateway.LocalGateway(backends, workdir, ports, values=values, **kwargs).start()
