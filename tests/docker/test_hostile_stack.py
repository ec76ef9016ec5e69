"""The hostile-input battery (tests/hostile_cases.py) against the compose stack, through its
gateway's published 127.0.0.1 ports, over HTTP and gRPC: after every case the Triton container
has the same RestartCount and is running, and the seed request is answered correctly."""
from __future__ import annotations

import pytest
from hostile_cases import Target, assert_serving, params, run
from stacks import start_stack

pytestmark = pytest.mark.docker

# The stack's gateway waits this long for a request (versions.env: 10 s in production), so the
# incomplete-request cases answer 408 quickly.
REQUEST_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def hostile_stack(built_images, tmp_path_factory):
    # Through the published 127.0.0.1 ports every client has docker-proxy's address, so the idle-connection
    # cases' flooder and the seed request would share one per-source budget: off here (0; the per-source
    # limits are drilled from a container of their own in test_gateway_floods). Those cases hold 1000
    # connections, over GATEWAY_MAXCONN (512): idle HTTP/2 connections stay for `timeout client`, so the
    # seed's gRPC connection would wait past its connect timeout. A budget that holds them, with fewer
    # streams per connection to stay under GATEWAY_MEMORY_LIMIT (the renderer checks).
    stack = start_stack(tmp_path_factory.mktemp("hostile"), GATEWAY_TIMEOUT_REQUEST=f"{REQUEST_TIMEOUT_S}s",
                        GATEWAY_CONN_PER_SOURCE="0", GATEWAY_MAXCONN="1100", GATEWAY_H2_MAX_STREAMS="3")
    try:
        yield stack
    finally:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)


@pytest.fixture(scope="module")
def triton_container(hostile_stack, docker_client):
    ids = hostile_stack.container_ids("triton")
    assert len(ids) == 1, f"triton containers: {ids}"
    return docker_client.containers.get(ids[0])


@pytest.mark.parametrize("case", params("gateway"))
def test_case_through_the_stack(case, hostile_stack, triton_container):
    env = hostile_stack.env
    target = Target(env["BIND_ADDRESS"], int(env["HOST_HTTP_PORT"]), int(env["HOST_GRPC_PORT"]),
                    patience=REQUEST_TIMEOUT_S + 3)
    triton_container.reload()
    restarts = triton_container.attrs["RestartCount"]

    def survived():
        triton_container.reload()
        state = triton_container.attrs["State"]
        assert triton_container.attrs["RestartCount"] == restarts and state["Running"], \
            f"triton container restarted or stopped on {case.id}: RestartCount {restarts} -> " \
            f"{triton_container.attrs['RestartCount']}, {state}\n{hostile_stack.logs_tail()}"
        assert_serving(target)

    run(case, "gateway", target, survived)
