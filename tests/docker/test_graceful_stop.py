"""Graceful stop: the engine waits longer than Triton drains.

On SIGTERM Triton refuses new requests and waits up to --exit-timeout-secs (versions.env
TRITON_EXIT_TIMEOUT_SECS, passed by the image's CMD) for in-flight ones; compose's stop_grace_period
(TRITON_STOP_GRACE_PERIOD, which both env file writers derive from it) must be longer, or the engine
SIGKILLs Triton mid-drain (Docker's default is 10 s). The first tests read the files; the drills stop
a stack's Triton while a request slower than Docker's default is in flight, and after keep-alive
traffic through the gateway (which must leave no idle connection for Triton to wait on).
"""
from __future__ import annotations

import http.client
import json
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tritonops import settings
from tritonops.stack import compose, gatewaycheck
from tritonops.stack.images import IMAGES

from stacks import linear_only_copy, start_stack

EXIT_TIMEOUT = int(settings.get("TRITON_EXIT_TIMEOUT_SECS"))
SLOW_S = 15  # longer than Docker's default stop timeout (10 s), shorter than the exit timeout
# `docker stop` times (docs/compose.md), measured at load 10-14 on the 2 cores: 17.0 / 18.1 s during the
# slow request (its last ~13 s, then 4-5 s to exit) and 4.2 / 4.4 s after keep-alive traffic (~3 s idle). The bounds
# leave ~2.4x the 4 s exit and still fail a Triton that waits out its exit timeout (30 s) for a connection.
STOP_DURING_REQUEST_MAX_S = SLOW_S + 10
STOP_PROMPT_MAX_S = 10
# A model that answers after as many seconds as its input says.
SLOW_CONFIG = """name: "slow"
backend: "python"
max_batch_size: 0
input [ { name: "x", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ 1 ] } ]
"""
SLOW_MODEL = """import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            time.sleep(float(x[0]))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", x)]))
        return responses
"""


def grace_seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, f"TRITON_STOP_GRACE_PERIOD={value!r}: expected whole seconds like 40s"
    return int(match.group(1))


def test_the_image_passes_the_exit_timeout_and_compose_waits_longer(tmp_path):
    cmd = (IMAGES / "Dockerfile").read_text().split("\nCMD ", 1)[1]
    assert '--exit-timeout-secs="${TRITON_EXIT_TIMEOUT_SECS}"' in cmd, "images/Dockerfile CMD lacks --exit-timeout-secs"
    triton = yaml.safe_load(compose.BASE_FILE.read_text())["services"]["triton"]
    assert triton["environment"]["TRITON_EXIT_TIMEOUT_SECS"] == "${TRITON_EXIT_TIMEOUT_SECS}"
    assert triton["stop_grace_period"] == "${TRITON_STOP_GRACE_PERIOD}"
    assert EXIT_TIMEOUT > SLOW_S
    # `make up`'s env file, with versions.env's timeout and with a host's own.
    for timeout in (EXIT_TIMEOUT, 95):
        env = settings.parse_env_file(compose.write_env(tmp_path / f"{timeout}.env", {"TRITON_EXIT_TIMEOUT_SECS": str(timeout)}))
        assert env["TRITON_EXIT_TIMEOUT_SECS"] == str(timeout)
        assert grace_seconds(env["TRITON_STOP_GRACE_PERIOD"]) >= timeout + compose.STOP_MARGIN_SECS, env


@pytest.mark.docker
def test_stop_waits_for_a_slow_request_and_triton_exits_cleanly(built_images, docker_client, tmp_path):
    """`docker stop` during a 15 s request: the request is answered, Triton logs its exit timeout and
    exits 0 by itself (137 = SIGKILLed), and the container's StopTimeout is the grace period."""
    repository = linear_only_copy(tmp_path / "model_repository")  # linear (the liveness check's) and slow
    (repository / "slow" / "1").mkdir(parents=True)
    (repository / "slow" / "config.pbtxt").write_text(SLOW_CONFIG)
    (repository / "slow" / "1" / "model.py").write_text(SLOW_MODEL)
    stack = start_stack(tmp_path, MODEL_REPOSITORY=str(repository))
    try:
        triton = docker_client.containers.get(stack.container_ids("triton")[0])
        grace = grace_seconds(stack.env["TRITON_STOP_GRACE_PERIOD"])
        assert triton.attrs["Config"]["StopTimeout"] == grace >= EXIT_TIMEOUT + compose.STOP_MARGIN_SECS
        assert re.search(rf"\|\s*exit_timeout\s*\|\s*{EXIT_TIMEOUT}\s*\|", triton.logs().decode()), \
            "Triton's options table does not show exit_timeout from TRITON_EXIT_TIMEOUT_SECS"

        answer: dict = {}

        def slow_request() -> None:
            body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [SLOW_S]}]}).encode()
            url = f"http://127.0.0.1:{stack.env['HOST_HTTP_PORT']}/v2/models/slow/infer"
            try:
                with urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"}),
                                            timeout=SLOW_S + 30) as reply:
                    answer["status"], answer["body"] = reply.status, json.loads(reply.read())
            except Exception as exc:  # noqa: BLE001 - reported in the assertion below
                answer["error"] = repr(exc)

        client = threading.Thread(target=slow_request)
        client.start()
        time.sleep(2)  # the request is in execute()
        started = time.monotonic()
        triton.stop()  # no timeout given: the engine uses the container's StopTimeout
        stopped_after = time.monotonic() - started
        client.join(timeout=60)
        triton.reload()
        print(f"\ndocker stop during a {SLOW_S} s request: {stopped_after:.1f} s, exit code "
              f"{triton.attrs['State']['ExitCode']}, client: {answer.get('status', answer.get('error'))}", file=sys.stderr)
        assert answer.get("status") == 200 and answer["body"]["outputs"][0]["data"] == [SLOW_S], answer
        assert triton.attrs["State"]["ExitCode"] == 0, (triton.attrs["State"], triton.logs(tail=30).decode())
        assert SLOW_S - 3 < stopped_after < min(STOP_DURING_REQUEST_MAX_S, grace), stopped_after
    finally:
        stack.down(volumes=True)


@pytest.mark.docker
def test_stop_is_prompt_after_keep_alive_traffic_through_the_gateway(built_images, docker_client, tmp_path):
    """A keep-alive client's requests through the gateway, then `docker stop`: Triton exits 0 within
    seconds. On SIGTERM Triton 2.51 waits for every open HTTP connection to close; HAProxy's default
    reuse pooled the gateway's connection after the client left and never closed it, so every stop
    (each release swap) took the whole exit timeout and exited 1 (haproxy.cfg.j2: http-reuse never)."""
    stack = start_stack(tmp_path)
    try:
        triton = docker_client.containers.get(stack.container_ids("triton")[0])
        client = http.client.HTTPConnection(stack.env["BIND_ADDRESS"], int(stack.env["HOST_HTTP_PORT"]), timeout=10)
        # the gateway's own check request of the stack's (linear-only) repository
        (check,) = gatewaycheck.checks(Path(stack.env["MODEL_REPOSITORY_DIR"]), int(stack.env["GATEWAY_MAX_BODY_BYTES"]))
        for _ in range(3):  # one connection, kept alive: the gateway keeps one to Triton for it
            client.request("POST", check["uri"], check["body"], {"Content-Type": "application/json"})
            reply = client.getresponse()
            assert reply.status == 200, reply.read()[:300]
            reply.read()
        client.close()
        time.sleep(2)  # past any check in flight
        since = int(time.time())
        started = time.monotonic()
        triton.stop()
        stopped_after = time.monotonic() - started
        triton.reload()
        waited = [line for line in triton.logs(since=since).decode().splitlines() if "service connections" in line]
        print(f"\ndocker stop after keep-alive traffic through the gateway: {stopped_after:.1f} s, exit code "
              f"{triton.attrs['State']['ExitCode']}", file=sys.stderr)
        assert not waited, f"Triton waited for open HTTP connections: {waited[:3]}"
        assert triton.attrs["State"]["ExitCode"] == 0, (triton.attrs["State"], triton.logs(tail=30).decode())
        assert stopped_after < STOP_PROMPT_MAX_S, stopped_after
    finally:
        stack.down(volumes=True)
