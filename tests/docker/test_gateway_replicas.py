"""A second compose stack: two Triton replicas behind the gateway, with TLS and an API key turned
on through versions.env's keys. gRPC calls on one client connection spread over both replicas
(each replica's own statistics show it), and TLS and the key work, or refuse, as configured."""
from __future__ import annotations

import subprocess
import time

import pytest
import tritonclient.grpc as grpcclient
from certs import self_signed
from stacks import start_stack
from tritonclient.utils import InferenceServerException

from tritonops.models import linear
from tritonops.serving import metrics

pytestmark = pytest.mark.docker
KEY = "compose-key-5d1e" * 2  # at least gateway.MIN_KEY_LENGTH characters


@pytest.fixture(scope="module")
def secured(built_images, tmp_path_factory):
    work = tmp_path_factory.mktemp("secured")
    tls = self_signed(work)
    (work / "keys").write_text(f"# one key per line\n{KEY}\n")
    (work / "keys").chmod(0o600)
    stack = start_stack(work, TRITON_REPLICAS="2", GATEWAY_TLS_CERT=str(tls.cert),
                        GATEWAY_TLS_KEY=str(tls.key), GATEWAY_API_KEYS_FILE=str(work / "keys"))
    try:
        yield stack, tls.cert
    finally:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)


def replica_successes(stack, docker_client) -> dict[str, float]:
    """nv_inference_request_success of each replica, read inside its container (none is published)."""
    out = {}
    for cid in stack.container_ids("triton"):
        container = docker_client.containers.get(cid)
        port = stack.env["METRICS_PORT"]
        text = container.exec_run(["python3", "-c", f"import urllib.request as u; print(u.urlopen("
                                   f"'http://127.0.0.1:{port}/metrics', timeout=5).read().decode())"]).output.decode()
        out[container.name] = metrics.parse(text, linear.MODEL)["nv_inference_request_success"]
    return out


def gateway_servers_up(stack, docker_client, backend: str) -> list[str]:
    """Servers the gateway has UP in backend, from its stats CSV (read inside its container)."""
    gateway = docker_client.containers.get(stack.container_ids("gateway")[0])
    fetch = (f"exec 3<>/dev/tcp/127.0.0.1/{stack.env['GATEWAY_STATS_PORT']}; "
             "printf 'GET /stats;csv HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3")
    rows = [line.split(",") for line in gateway.exec_run(["bash", "-c", fetch]).output.decode().splitlines()]
    return [r[1] for r in rows if len(r) > 17 and r[0] == backend and r[1] != "BACKEND" and r[17] == "UP"]


def test_grpc_over_tls_with_key_spreads_over_both_replicas(secured, docker_client):
    stack, ca = secured
    deadline = time.monotonic() + 30  # both replicas healthy; the gateway takes each after two checks
    while len(gateway_servers_up(stack, docker_client, "triton_grpc")) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(gateway_servers_up(stack, docker_client, "triton_grpc")) == 2
    before = replica_successes(stack, docker_client)
    assert len(before) == 2, before
    n = 40
    with grpcclient.InferenceServerClient(f"localhost:{stack.env['HOST_GRPC_PORT']}", ssl=True,
                                          root_certificates=str(ca)) as client:  # one HTTP/2 connection
        for _ in range(n):
            inputs, outputs = linear.grpc_inputs(linear.SEED_X)
            y = client.infer(linear.MODEL, inputs, outputs=outputs, headers={"x-api-key": KEY}).as_numpy(linear.OUTPUT)
            assert linear.check_output(linear.SEED_X, y) is None
    served = {name: count - before[name] for name, count in replica_successes(stack, docker_client).items()}
    # roundrobin gives each 20; the gateway's health checks add about 2 inferences a second to each
    assert sum(served.values()) >= n and min(served.values()) >= n // 4, served


def test_key_and_tls_are_enforced(secured):
    stack, ca = secured
    with grpcclient.InferenceServerClient(f"localhost:{stack.env['HOST_GRPC_PORT']}", ssl=True,
                                          root_certificates=str(ca)) as client:
        inputs, outputs = linear.grpc_inputs(linear.SEED_X)
        with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
            client.infer(linear.MODEL, inputs, outputs=outputs)
    url = f"localhost:{stack.env['HOST_HTTP_PORT']}/v2/models/{linear.MODEL}"
    curl = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"]
    assert subprocess.run([*curl, "--cacert", str(ca), "-H", f"x-api-key: {KEY}", f"https://{url}"],
                          capture_output=True, text=True).stdout == "200"
    assert subprocess.run([*curl, "--cacert", str(ca), f"https://{url}"], capture_output=True, text=True).stdout == "401"
    # Plain HTTP on the TLS port: HAProxy's handshake fails and it closes, so curl exits 52 (empty reply)
    # with no status; a refused connection (exit 7) or any HTTP answer would be something else.
    plain = subprocess.run([*curl, f"http://{url}"], capture_output=True, text=True)
    assert (plain.returncode, plain.stdout) == (52, "000"), plain
