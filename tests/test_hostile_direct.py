"""The hostile-input battery (tests/hostile_cases.py) straight to a wheel tritonserver, over HTTP and
gRPC, no gateway in front: what `make serve` exposes. After every case the server is alive, READY
and answers the seed request correctly."""
from __future__ import annotations

import time

import pytest
from hostile_cases import Target, UpstreamDeviation, params, run, assert_serving

from repos import linear_only

PATIENCE_S = 2  # Triton never answers an incomplete request: this long is enough to say so


def target(server) -> Target:
    return Target("127.0.0.1", server.ports["http"], server.ports["grpc"], PATIENCE_S)


@pytest.mark.parametrize("case", params("direct"))
def test_case_direct(case, triton):
    def survived():
        assert triton.proc.poll() is None, f"tritonserver died on {case.id}: {triton.failure_reason()}"
        assert_serving(target(triton))

    run(case, "direct", target(triton), survived)


@pytest.mark.parametrize("case", params("direct", crashes=True))
def test_crashing_case_direct_on_a_server_of_its_own(case, serve_repository, tmp_path):
    """Cases that kill a bare 2.51 server run on a throwaway one, so the session's server lives on;
    tests/gateway/test_hostile_gateway.py shows the gateway stops the same bytes."""
    victim = serve_repository(linear_only(tmp_path / "victim"))
    case.send(target(victim))
    deadline = time.monotonic() + 30
    while victim.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert victim.proc.poll() is not None, (f"{case.id}: tritonserver survived; is the pinned Triton patched? "
                                            "Move the case's direct outcome off crash=True")
    raise UpstreamDeviation(f"{case.id}: tritonserver exited with {victim.proc.returncode}: {case.direct.upstream}")
