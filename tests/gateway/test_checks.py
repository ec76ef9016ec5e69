"""Health means answers: a Triton whose model stub died still says READY, but the gateway's
inference check takes it out of rotation within a few seconds (inter 1s, fall 2, and each failing
inference takes Triton about a second), after which every answer is correct again. Requests that
reach the dead replica before then fail: the gateway does not retry 500s (Triton 2.51 also answers
malformed requests with 500, and resending those would multiply them)."""
from __future__ import annotations

import os
import signal
import time
import urllib.request

import psutil
from gateway_harness import backend, serve, start_gateway

from tritonops import contract, smoke

DETECT_WITHIN_S = 10  # fall 2 x (inter 1 s + a failing inference's ~1 s), with room for a busy box


def test_a_dead_model_stub_leaves_rotation_while_ready_stays_200(haproxy, tmp_path):
    servers = [serve(tmp_path / f"t{i}.log") for i in range(2)]
    gw = start_gateway([backend(f"t{i}", s) for i, s in enumerate(servers)], tmp_path / "gateway")
    try:
        stubs = [p for p in psutil.Process(servers[1].proc.pid).children(recursive=True)
                 if "triton_python_backend_stub" in " ".join(p.cmdline())]
        assert stubs, "no Python backend stub under the second server"
        for stub in stubs:
            os.kill(stub.pid, signal.SIGKILL)
        killed = time.monotonic()
        sent, failed, down_after = 0, 0, None
        while time.monotonic() - killed < DETECT_WITHIN_S:
            sent += 1
            try:
                y = smoke.infer_http(gw.http_url, contract.SEED_X, binary=True)
                assert contract.check_output(contract.SEED_X, y) is None  # a wrong answer is never acceptable
            except Exception as exc:  # the dead replica's 500s, until the check takes it out
                assert "not healthy" in str(exc), exc
                failed += 1
            if gw.server_states()[("triton_http", "t1")].startswith("DOWN"):
                down_after = time.monotonic() - killed
                break
            time.sleep(0.05)
        assert down_after is not None, f"dead stub still in rotation after {DETECT_WITHIN_S} s: {gw.server_states()}"
        print(f"dead stub out of rotation after {down_after:.1f} s; {failed} of {sent} requests failed meanwhile")
        with urllib.request.urlopen(f"http://{servers[1].http_url}/v2/health/ready", timeout=5) as r:
            assert r.status == 200  # Triton's readiness does not notice; the inference check does
        for _ in range(20):  # all traffic now goes to the healthy replica
            assert contract.check_output(contract.SEED_X, smoke.infer_http(gw.http_url, contract.SEED_X, binary=False)) is None
    finally:
        gw.stop()
        for s in servers:
            s.stop()
