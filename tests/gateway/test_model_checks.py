"""The gateway serves a user's repository: real HAProxy from the template in front of two wheel
tritonservers serving only models no project file names (tally_kit and a second copy of it), with
the health check derived from their descriptors. Both servers come UP and the models answer through
the gateway; when the stub of the *last* checked model dies on one server, that server goes DOWN
(every model is checked, not only the first), naming the model, and the other keeps serving."""
from __future__ import annotations

import io
import os
import re
import shutil
import signal
import time

import psutil
import pytest
from gateway_harness import backend, start_gateway
from repos import BYOM_MODEL, build_byom_repository

from tritonops.models import linear
from tritonops.serving import smoke
from tritonops.stack import gateway, gatewaycheck
from tritonops.serving.server import LocalServer, free_port

SECOND = "zz_tally"  # sorts after tally_kit: checked last
# Out of rotation within (test_checks.py's bound for linear): inter 1s, fall 2, a failing inference ~1-2 s.
DETECT_WITHIN_S = 12


def user_repository(root):
    repo = build_byom_repository(root)
    shutil.copytree(repo / BYOM_MODEL, repo / SECOND)
    (repo / SECOND / "config.pbtxt").write_text((repo / SECOND / "config.pbtxt").read_text().replace(BYOM_MODEL, SECOND))
    return repo


@pytest.fixture
def user_models(haproxy, tmp_path):
    repo = user_repository(tmp_path)
    servers = []
    try:
        for name in ("a", "b"):
            servers.append(LocalServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                       host="127.0.0.1", log_path=tmp_path / f"triton-{name}.log").start())
        gw = start_gateway([backend(n, s) for n, s in zip("ab", servers)], tmp_path / "gateway", repository=repo)
        try:
            yield repo, dict(zip("ab", servers)), gw
        finally:
            gw.stop()
    finally:
        for server in servers:
            server.stop()


def test_a_user_repository_is_checked_model_by_model_and_served(user_models):
    repo, servers, gw = user_models
    assert [c["model"] for c in gatewaycheck.checks(repo, 1 << 20)] == [BYOM_MODEL, SECOND]
    config = gw.config.read_text()
    assert f"/v2/models/{linear.MODEL}/" not in config
    states = gw.server_states()
    assert {states[(b, s)].split()[0] for b in ("triton_http", "triton_grpc") for s in "ab"} == {"UP"}, states
    out = io.StringIO()
    smoke.run(gw.http_url, gw.grpc_url, out=out, repository=repo)  # answers compared with the descriptors
    assert out.getvalue().count("ok ") == 6, out.getvalue()  # 2 models x HTTP JSON, binary, gRPC

    stubs = [p for p in psutil.Process(servers["b"].proc.pid).children(recursive=True)
             if f"/{SECOND}/1/model.py" in " ".join(p.cmdline())]
    assert len(stubs) == 1, [" ".join(p.cmdline()) for p in psutil.Process(servers["b"].proc.pid).children(recursive=True)]
    os.kill(stubs[0].pid, signal.SIGKILL)
    killed, down_after = time.monotonic(), None
    while time.monotonic() - killed < DETECT_WITHIN_S:
        states = gw.server_states()  # HTTP and gRPC backends are checked apart: both
        if states[("triton_http", "b")].startswith("DOWN") and states[("triton_grpc", "b")].startswith("DOWN"):
            down_after = time.monotonic() - killed
            break
        time.sleep(0.1)
    assert down_after is not None, f"server b (dead {SECOND} stub) still UP after {DETECT_WITHIN_S} s: {gw.server_states()}"
    print(f"\nserver with a dead {SECOND} stub out of rotation after {down_after:.1f} s")
    assert gw.server_states()[("triton_http", "a")].startswith("UP") and gw.server_states()[("triton_grpc", "a")].startswith("UP")
    # HAProxy's log says why, the expect's comment naming the model (show stat's last_chk moves on with later checks)
    said = rf"Server triton_http/b is DOWN, reason: [^\n]*comment: {SECOND}'s sample did not answer 200"
    assert re.search(said, gw.log_path.read_text()), gw.log_path.read_text()[-2000:]
    out = io.StringIO()
    smoke.run(gw.http_url, gw.grpc_url, out=out, repository=repo)  # all traffic on server a: every answer right
    assert out.getvalue().count("ok ") == 6, out.getvalue()


def test_a_fleet_gateway_takes_out_a_host_whose_own_gateway_has_no_answering_triton(haproxy, tmp_path):
    """The fleet flavour (the gateway role renders no model checks): each backend is a host's gateway,
    checked by /v2/health/ready through it, which is 503 once that gateway's only Triton failed a model's
    check. So the fleet needs no copy of any host's repository, mid-roll hosts may serve different ones."""
    repo = user_repository(tmp_path)
    server = LocalServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         host="127.0.0.1", log_path=tmp_path / "triton.log").start()
    gateways = []
    try:
        host = start_gateway([backend("t", server)], tmp_path / "host-gateway", repository=repo)
        gateways.append(host)
        empty = tmp_path / "fleet-repository"
        empty.mkdir()  # no descriptors: no model checks, readiness
        fleet = start_gateway([gateway.Backend("gpu1", "127.0.0.1", host.ports["http"], host.ports["grpc"], host.ports["metrics"])],
                              tmp_path / "fleet-gateway", repository=empty)
        gateways.append(fleet)
        assert "uri /v2/health/ready" in fleet.config.read_text() and "/infer" not in fleet.config.read_text().split("option httpchk")[1]
        out = io.StringIO()
        smoke.run(fleet.http_url, fleet.grpc_url, out=out, repository=repo)  # through both gateways
        assert out.getvalue().count("ok ") == 6, out.getvalue()

        (stub,) = [p for p in psutil.Process(server.proc.pid).children(recursive=True)
                   if f"/{SECOND}/1/model.py" in " ".join(p.cmdline())]
        os.kill(stub.pid, signal.SIGKILL)
        killed, down_after = time.monotonic(), None
        while time.monotonic() - killed < 2 * DETECT_WITHIN_S:  # the host's gateway first, then the fleet's
            if fleet.server_states()[("triton_http", "gpu1")].startswith("DOWN"):
                down_after = time.monotonic() - killed
                break
            time.sleep(0.1)
        assert down_after is not None, f"fleet: {fleet.server_states()}; host: {host.server_states()}"
        assert host.server_states()[("triton_http", "t")].startswith("DOWN")
        print(f"\nhost out of the fleet's rotation {down_after:.1f} s after its only Triton's {SECOND} stub died")
    finally:
        for g in reversed(gateways):
            g.stop()
        server.stop()
