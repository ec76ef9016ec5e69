"""Secure by default, on the wheel's server: LocalServer and `tritonops serve` listen on loopback only,
and the management APIs need the admin key (drill in tests/restricted.py) while inference, health,
metadata and config stay open."""
from __future__ import annotations

import ipaddress
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import restricted
from repos import linear_only

from tritonops import settings
from tritonops.bench import perf_analyzer
from tritonops.models import linear
from tritonops.serving import adminkey
from tritonops.serving.server import LocalServer, free_port, listening

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}  # gRPC listens IPv6-style on an IPv4-mapped address


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """LocalServer with its defaults: no host, no key given (ADMIN_KEY_FILE, generated when missing). Linear
    only: the drill's endpoints name linear, and embed's pipeline would add ~10-25 s to the start."""
    work = tmp_path_factory.mktemp("restricted")
    with LocalServer(linear_only(work / "repo"), http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                     log_path=work / "server.log") as s:
        assert s.admin_key_file == adminkey.default_file()
        yield s


def other_local_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                return a.address
    return None


def test_listens_on_loopback_only(server):
    assert server.host == "127.0.0.1" and settings.get("BIND_ADDRESS") == "127.0.0.1"
    sockets = listening(server.proc.pid)
    assert set(server.ports.values()) <= set(sockets), sockets
    assert {sockets[p] for p in server.ports.values()} <= LOOPBACK, sockets


def test_other_local_address_is_refused(server):
    address = other_local_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    for role, port in server.ports.items():
        with pytest.raises(ConnectionRefusedError), socket.create_connection((address, port), timeout=5):
            pass


def test_http_management_apis_need_the_key(server, http_send):
    assert server.admin_key, "LocalServer is not restricted by default"
    assert restricted.check_http(http_send(server.http_url), server.admin_key) == []
    assert server.admin_key not in server.log_path.read_text()  # Triton logs the refusals, not the key


def test_grpc_management_apis_need_the_key(server):
    assert server.admin_key, "LocalServer is not restricted by default"
    assert restricted.check_grpc(server.grpc_url, server.admin_key) == []


@pytest.fixture
def http_send():
    import json
    import urllib.error
    import urllib.request

    def sender(url: str):
        def send(requests):
            out = []
            for method, path, body, headers in requests:
                data = None if body is None else json.dumps(body).encode()
                req = urllib.request.Request(f"http://{url}{path}", data=data, method=method,
                                             headers={"Content-Type": "application/json", **headers})
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        out.append((r.status, r.read().decode()))
                except urllib.error.HTTPError as exc:
                    out.append((exc.code, exc.read().decode()))
            return out
        return send
    return sender


def test_perf_analyzer_reads_server_statistics_with_the_key_only(server, tmp_path):
    """`make bench`'s perf_analyzer asks the restricted statistics API for the server-side split:
    refused without the key (exit 99), measured with it (-H), and its log names the header, not the key."""
    log = tmp_path / "perf_analyzer.log"
    opts = perf_analyzer.Options(measurement_ms=500, max_trials=3, stability_pct=1000, log_path=log)
    with pytest.raises(perf_analyzer.PerfAnalyzerError, match="This API is restricted"):
        perf_analyzer.run(server.http_url, linear.MODEL, [1], tmp_path / "without.csv", opts)
    (point,), failed = perf_analyzer.run(server.http_url, linear.MODEL, [1], tmp_path / "with.csv", opts,
                                         headers=server.admin_headers())
    assert not failed and point.throughput > 0 and point.compute_us > 0
    assert f"-H {adminkey.header()}:***" in log.read_text() and server.admin_key not in log.read_text()


def test_key_file_is_generated_private_and_checked(tmp_path):
    path = tmp_path / "secrets" / "admin-key"
    key = adminkey.ensure(path)
    assert len(key) >= 40 and path.read_text() == key + "\n"
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert adminkey.ensure(path) == key  # kept, not regenerated
    path.chmod(0o644)
    with pytest.raises(adminkey.AdminKeyError, match=f"{path}: mode 0644 lets other users read"):
        adminkey.ensure(path)


def test_serve_cli_binds_loopback_and_says_where_the_key_is(tmp_path):
    """What `make serve` runs, with its defaults (BIND_ADDRESS) and a key file of this test's own; a
    linear-only repository (what it binds does not depend on the models; embed's start is slow)."""
    key_file = tmp_path / "admin-key"
    ports = [free_port() for _ in range(3)]
    proc = subprocess.Popen([sys.executable, "-m", "tritonops.cli", "serve", "--http-port", str(ports[0]),
                             "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
                             "--admin-key-file", str(key_file), "--repository", str(linear_only(tmp_path / "repo"))],
                            cwd=settings.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(l.startswith("Ctrl-C") for l in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        text = "".join(lines)
        assert "Triton is READY" in text, text[-3000:]
        assert f"need header {adminkey.header()}: the key is in {key_file}" in text
        assert adminkey.ensure(key_file) not in text  # the path is printed, never the key
        server_pid = next(p.pid for p in psutil.Process(proc.pid).children() if p.name() == "tritonserver")
        sockets = listening(server_pid)
        assert {sockets[p] for p in ports} <= LOOPBACK, sockets
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
