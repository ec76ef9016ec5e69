"""The gateway's edge, for real: HAProxy rendered from gateway/haproxy.cfg.j2 in front of two wheel
tritonservers. Management APIs refused, sizes and slow clients cut, chunked bombs stopped, gRPC
balanced per call; each refusal also checked against Triton directly (the control)."""
from __future__ import annotations

import http.client
import io
import json
import os
import signal
import time
import urllib.error
import urllib.request

import hostile
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from gateway_harness import REQUEST_TIMEOUT_S, serve
from tritonclient.utils import InferenceServerException

from tritonops import settings
from tritonops.models import linear
from tritonops.serving import metrics, smoke
from tritonops.stack import gatewaycheck

MAX_BODY = int(settings.get("GATEWAY_MAX_BODY_BYTES"))
MANAGEMENT_HTTP = [
    ("POST", "/v2/repository/index"), ("POST", f"/v2/repository/models/{linear.MODEL}/load"),
    ("GET", "/v2/logging"), ("POST", "/v2/logging"), ("GET", "/v2/trace/setting"),
    ("GET", f"/v2/models/{linear.MODEL}/trace/setting"), ("GET", "/v2/systemsharedmemory/status"),
    ("POST", "/v2/systemsharedmemory/region/r/register"), ("GET", "/v2/cudasharedmemory/status"),
]


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(f"http://{url}{path}", data=body if body is not None else (b"{}" if method == "POST" else None),
                                 method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def assert_serving(gw, replicas) -> None:
    """Every replica alive and READY, and the gateway answers the seed request correctly."""
    for name, server in replicas.items():
        assert server.proc.poll() is None, f"replica {name} died: {server.failure_reason()}"
        assert request(server.http_url, "GET", "/v2/health/ready")[0] == 200, name
    y = smoke.infer_http(gw.http_url, linear.SEED_X, binary=False)
    assert linear.check_output(linear.SEED_X, y) is None


def test_seed_request_through_the_gateway_http_binary_grpc(gw):
    out = io.StringIO()
    smoke.run(gw.http_url, gw.grpc_url, out=out, models=[linear.MODEL])  # the gateway's replicas serve linear only
    assert out.getvalue().count("ok ") == 3, out.getvalue()


def test_backends_are_up_by_an_inference_check(gw):
    states = gw.server_states()
    assert {s.split()[0] for s in states.values()} == {"UP"}, states
    assert {b for b, _ in states} == {"triton_http", "triton_grpc", "triton_metrics"}
    config = gw.config.read_text()
    assert f"http-check send meth POST uri /v2/models/{linear.MODEL}/infer" in config
    assert "http-check expect status 200" in config and "inter 1s fastinter 250ms fall 2 rise 2" in config


def test_the_check_request_is_a_valid_inference(replicas):
    """The probe body (linear's first sample, tritonops.stack.gatewaycheck) is a real request the model answers correctly."""
    (check,) = gatewaycheck.checks(replicas["a"].repository, MAX_BODY)
    (tensor,) = json.loads(check["body"])["inputs"]
    x = np.array(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    status, raw = request(replicas["a"].http_url, "POST", check["uri"], check["body"].encode())
    assert status == 200, raw
    y = np.array(json.loads(raw)["outputs"][0]["data"], dtype=np.float32).reshape(-1, 1)
    assert linear.check_output(x, y) is None


@pytest.mark.parametrize("method,path", MANAGEMENT_HTTP)
def test_management_http_refused_at_the_edge(gw, replicas, method, path):
    key = replicas["a"].admin_headers("http")
    # refused by the gateway itself, even with Triton's admin key: management stays on the host
    status, body = request(gw.http_url, method, path, headers=key)
    assert status == 403 and b"refused at the gateway" in body, (status, body)
    # control: Triton itself answers with the key (not 403): the gateway is what refuses
    assert request(replicas["a"].http_url, method, path, headers=key)[0] != 403


@pytest.mark.parametrize("call", ["get_model_repository_index", "get_log_settings", "get_trace_settings",
                                  "get_system_shared_memory_status", "get_cuda_shared_memory_status",
                                  "load_model", "unload_model"])
def test_management_grpc_refused_at_the_edge(gw, replicas, call):
    args = (linear.MODEL,) if call in ("load_model", "unload_model") else ()
    key = replicas["a"].admin_headers("grpc")
    with grpcclient.InferenceServerClient(gw.grpc_url) as client:
        with pytest.raises(InferenceServerException) as refused:
            getattr(client, call)(*args, headers=key)
    assert "PERMISSION_DENIED" in str(refused.value) and "refused at the gateway" in str(refused.value)
    if call not in ("load_model", "unload_model", "get_cuda_shared_memory_status"):  # control, where Triton answers
        with grpcclient.InferenceServerClient(replicas["a"].grpc_url) as client:
            getattr(client, call)(*args, headers=key)


def test_metadata_config_and_health_stay_open(gw):
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{linear.MODEL}",
                 f"/v2/models/{linear.MODEL}/config", f"/v2/models/{linear.MODEL}/ready"):
        assert request(gw.http_url, "GET", path)[0] == 200, path


def test_body_over_the_cap_is_413_and_under_it_reaches_triton(gw, replicas):
    path = f"/v2/models/{linear.MODEL}/infer"

    def post(declared: int, body: bytes) -> bytes:
        head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
        return hostile.send_raw("127.0.0.1", gw.ports["http"], head.encode() + body, timeout=30)

    answer = post(MAX_BODY + 1, b"x" * (MAX_BODY + 1))
    assert hostile.status_of(answer) == 413 and str(MAX_BODY).encode() in answer, answer[:200]
    # a Content-Length larger than what follows (64 MiB declared): refused on the header alone
    answer = post(64 << 20, b"{}")
    assert hostile.status_of(answer) == 413, answer[:200]
    status, body = request(gw.http_url, "POST", path, b"x" * (MAX_BODY - 1024))
    assert status not in (413, 502, 503) and b"failed to parse" in body, (status, body[:200])  # Triton's own answer
    assert_serving(gw, replicas)


def test_chunked_bomb_is_refused_and_no_backend_dies(gw, replicas):
    started = time.monotonic()
    answer = hostile.send_raw("127.0.0.1", gw.ports["http"], hostile.chunked_post(hostile.BOMB_CHUNKS))
    assert hostile.status_of(answer) == 413, answer[:200]
    assert time.monotonic() - started < 30
    assert_serving(gw, replicas)


def test_small_chunked_body_reaches_triton_reframed(gw, replicas):
    """A chunked body under the cap, in one-byte chunks (6 bytes each on the wire): Triton gets it
    re-framed and answers its usual parse error."""
    answer = hostile.send_raw("127.0.0.1", gw.ports["http"], hostile.chunked_post(MAX_BODY - 1024))
    assert hostile.status_of(answer) in (400, 500) and b"failed to parse the request JSON" in answer, answer[:300]
    assert_serving(gw, replicas)


def test_control_the_same_bomb_kills_triton_without_the_gateway(haproxy, tmp_path):
    """The drill is real: sent straight to a 2.51 server (make serve style), the bomb kills it."""
    server = serve(tmp_path / "victim.log")
    try:
        hostile.send_raw("127.0.0.1", server.ports["http"], hostile.chunked_post(hostile.BOMB_CHUNKS), timeout=60)
        deadline = time.monotonic() + 30
        while server.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.proc.poll() is not None, "tritonserver survived the chunked bomb: is the pinned Triton patched?"
    finally:
        server.stop()


def test_long_url_and_large_headers_refused(gw):
    assert request(gw.http_url, "GET", "/v2/models/" + "a" * 9000)[0] == 414
    assert request(gw.http_url, "GET", "/v2/health/ready", headers={"X-Big": "b" * 17000})[0] == 431


def test_slowloris_is_cut_by_the_request_timeout(gw):
    elapsed, answer = hostile.slow_headers("127.0.0.1", gw.ports["http"], give_up=30)
    assert elapsed < REQUEST_TIMEOUT_S + 10, f"still open after {elapsed:.1f}s"
    assert elapsed >= REQUEST_TIMEOUT_S - 0.5, f"cut after {elapsed:.1f}s, before the timeout: {answer[:100]!r}"
    assert answer == b"" or hostile.status_of(answer) == 408, answer[:200]


def test_grpc_message_over_the_cap_is_resource_exhausted(gw):
    x = np.ones((MAX_BODY // 12 + 1, 3), dtype=np.float32)  # > MAX_BODY bytes of raw tensor
    with grpcclient.InferenceServerClient(gw.grpc_url) as client:
        inputs, outputs = linear.grpc_inputs(x)
        with pytest.raises(InferenceServerException) as refused:
            client.infer(linear.MODEL, inputs, outputs=outputs)
    assert "RESOURCE_EXHAUSTED" in str(refused.value), refused.value


def _stat(gw, backend: str, server: str, field: str) -> int:
    lines = gw.admin("show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    row = next(dict(zip(header, line.split(","))) for line in lines[1:] if line.startswith(f"{backend},{server},"))
    return int(row[field] or 0)


def test_grpc_calls_on_one_connection_are_spread_over_both_replicas(gw, replicas):
    n = 40
    before = {name: metrics.scrape(s.metrics_url, linear.MODEL)["nv_inference_request_success"] for name, s in replicas.items()}
    routed = {name: _stat(gw, "triton_grpc", name, "stot") for name in replicas}
    connections = _stat(gw, "grpc", "FRONTEND", "conn_tot")
    with grpcclient.InferenceServerClient(gw.grpc_url) as client:  # one channel: one HTTP/2 connection
        for _ in range(n):
            inputs, outputs = linear.grpc_inputs(linear.SEED_X)
            y = client.infer(linear.MODEL, inputs, outputs=outputs).as_numpy(linear.OUTPUT)
            assert linear.check_output(linear.SEED_X, y) is None
    assert _stat(gw, "grpc", "FRONTEND", "conn_tot") - connections == 1
    routed = {name: _stat(gw, "triton_grpc", name, "stot") - routed[name] for name in replicas}
    assert sum(routed.values()) == n and min(routed.values()) >= n // 4, routed  # roundrobin: 20/20
    # each Triton's own statistics saw its share (health checks add a few inferences each second)
    served = {name: metrics.scrape(s.metrics_url, linear.MODEL)["nv_inference_request_success"] - before[name]
              for name, s in replicas.items()}
    assert all(served[name] >= routed[name] for name in replicas), (served, routed)


def test_a_reload_answers_a_kept_alive_connection_instead_of_closing_it(gw):
    """A reload (SIGUSR2 to the master, what systemd's reload and a fleet inventory change send) soft-stops
    the old worker. A client's idle keep-alive connection to it gets its next request answered, with
    Connection: close, rather than closed under it (the fleet drill's one "connection closed" in 1 688)."""
    host, port = gw.http_url.split(":")
    body = json.dumps({"inputs": [{"name": linear.INPUT, "datatype": "FP32", "shape": [1, 3],
                                   "data": [2.0, 3.0, 4.0]}]})
    path = f"/v2/models/{linear.MODEL}/infer"
    kept = http.client.HTTPConnection(host, int(port), timeout=30)
    kept.request("POST", path, body=body)
    first = kept.getresponse()
    assert first.status == 200 and first.getheader("connection") != "close", first.read()
    first.read()
    master = psutil.Process(gw.proc.pid)
    old = {w.pid for w in master.children()}
    os.kill(master.pid, signal.SIGUSR2)
    # The old worker has soft-stopped once it holds no listening socket (or is gone).
    deadline = time.monotonic() + 30
    while True:
        workers = master.children()
        listening = [w for w in workers if w.pid in old and any(c.status == psutil.CONN_LISTEN for c in _connections(w))]
        if any(w.pid not in old for w in workers) and not listening:
            break
        assert time.monotonic() < deadline, f"no reload after 30 s: workers {workers}"
        time.sleep(0.1)
    try:
        kept.request("POST", path, body=body)
        second = kept.getresponse()
        answer = (second.status, second.getheader("connection"), second.read())
    except (ConnectionError, http.client.HTTPException) as exc:
        answer = exc
    kept.close()
    assert not isinstance(answer, Exception) and answer[:2] == (200, "close"), f"the kept-alive request after a reload got {answer!r}"
    assert master.is_running() and gw.proc.poll() is None
    status, _ = request(gw.http_url, "POST", path, body.encode())
    assert status == 200


def _connections(proc: psutil.Process) -> list:
    try:
        return proc.net_connections(kind="inet")
    except psutil.NoSuchProcess:
        return []
