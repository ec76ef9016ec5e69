"""Gateway suite: this machine's HAProxy (Debian's package) rendered from gateway/haproxy.cfg.j2, in
front of real tritonservers (the wheel's) on free 127.0.0.1 ports. No Docker needed; without
haproxy the tests skip with the reason (CI=true: fail)."""
from __future__ import annotations

import pytest
from ci_policy import skip_or_fail
from gateway_harness import backend, serve, start_gateway

from tritonops.stack import gateway

@pytest.fixture(scope="session")
def haproxy() -> str:
    try:
        return gateway.haproxy_binary()
    except gateway.GatewayError as exc:
        skip_or_fail(str(exc), need="haproxy")


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
