"""Restricted management APIs in the compose stack: Triton (which publishes nothing) refuses every
restricted endpoint without the admin key and serves it with the key, drilled from inside its
container over HTTP and from this host to its container address over gRPC; statistics work through
the gateway with the key only, the other management APIs never leave the host, and the key shows
nowhere in `docker inspect`."""
from __future__ import annotations

import json
import subprocess

import pytest
import restricted
import tritonclient.grpc as grpcclient
from stacks import start_stack
from tritonclient.utils import InferenceServerException

from tritonops.models import linear
from tritonops.serving import adminkey

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def stack(built_images, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("restricted-stack")
    stack = start_stack(tmp, ADMIN_KEY_FILE=str(tmp / "secrets" / "admin-key"))
    try:
        yield stack
    finally:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)


@pytest.fixture(scope="module")
def key(stack) -> str:
    return adminkey.ensure(adminkey.default_file(stack.env["ADMIN_KEY_FILE"]))


@pytest.fixture(scope="module")
def triton_id(stack) -> str:
    (cid,) = stack.container_ids("triton")
    return cid


def inspect(ref: str) -> dict:
    return json.loads(subprocess.run(["docker", "inspect", ref], capture_output=True, text=True, check=True).stdout)[0]


def test_key_file_is_private_and_the_key_is_not_in_docker_inspect(stack, key, triton_id):
    path = adminkey.default_file(stack.env["ADMIN_KEY_FILE"])
    assert path.stat().st_mode & 0o777 == 0o600
    assert key not in stack.env_file.read_text()
    container = inspect(triton_id)
    assert key not in json.dumps(container) and key not in json.dumps(inspect(container["Image"]))
    assert not any(key in e for e in container["Config"]["Env"])
    mounts = {m["Destination"]: m for m in container["Mounts"]}
    assert mounts["/run/secrets/triton-admin-key"]["RW"] is False


def test_http_drill_inside_the_triton_container(stack, key, triton_id):
    def send(requests):
        done = subprocess.run(["docker", "exec", "-i", triton_id, "python3", "-c", restricted.SEND_SCRIPT,
                               f"http://127.0.0.1:{stack.env['HTTP_PORT']}"],
                              input=json.dumps(requests), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert restricted.check_http(send, key) == []


def test_grpc_drill_to_the_triton_container(stack, key, triton_id):
    # Triton publishes nothing: reach its address on the stack's bridge network from this host.
    (network,) = inspect(triton_id)["NetworkSettings"]["Networks"].values()
    assert restricted.check_grpc(f"{network['IPAddress']}:{stack.env['GRPC_PORT']}", key) == []


def test_statistics_through_the_gateway_need_the_key(stack, key):
    import urllib.error
    import urllib.request

    env = stack.env
    http = f"http://{env['BIND_ADDRESS']}:{env['HOST_HTTP_PORT']}"

    def get(path: str, headers: dict) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(urllib.request.Request(http + path, headers=headers), timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    status, body = get(f"/v2/models/{linear.MODEL}/stats", {})
    assert (status, json.loads(body)["error"]) == restricted.HTTP_REFUSAL  # Triton's refusal, passed through
    status, body = get(f"/v2/models/{linear.MODEL}/stats", adminkey.headers(key))
    assert status == 200 and json.loads(body)["model_stats"][0]["name"] == linear.MODEL
    # With the key or without, the other management APIs stop at the gateway.
    for path in ("/v2/logging", "/v2/trace/setting", "/v2/systemsharedmemory/status"):
        assert get(path, adminkey.headers(key))[0] == 403
        assert "refused at the gateway" in get(path, adminkey.headers(key))[1]

    with grpcclient.InferenceServerClient(f"{env['BIND_ADDRESS']}:{env['HOST_GRPC_PORT']}") as client:
        with pytest.raises(InferenceServerException) as refused:
            client.get_inference_statistics(linear.MODEL)
        assert (str(refused.value.status()), refused.value.message()) == restricted.GRPC_REFUSAL
        stats = client.get_inference_statistics(linear.MODEL, headers=adminkey.headers(key, "grpc"), as_json=True)
        assert stats["model_stats"][0]["name"] == linear.MODEL
        with pytest.raises(InferenceServerException, match="refused at the gateway"):
            client.get_log_settings(headers=adminkey.headers(key, "grpc"))


def test_no_key_file_stops_the_container_instead_of_opening_the_apis(built_images, docker_client):
    """Fail closed: the image started without an admin key exits (78) saying why, unless
    TRITON_MANAGEMENT_OPEN=1 asks for open management APIs (test_baked_image.py runs it so)."""
    container = docker_client.containers.run(built_images["triton"], detach=True, init=True)
    try:
        status = container.wait(timeout=60)
        logs = container.logs().decode()
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 78, logs
    assert "error: no admin key at /run/secrets/triton-admin-key: not starting with the management APIs open" in logs, logs
