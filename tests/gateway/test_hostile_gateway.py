"""The hostile-input battery (tests/hostile_cases.py) through the gateway: this machine's HAProxy
rendered from gateway/haproxy.cfg.j2 in front of the session's wheel tritonserver, over HTTP and
gRPC. After every case Triton is alive, and READY and the seed request answered correctly through
the gateway. tests/test_hostile_direct.py sends the same bytes straight to Triton (the control)."""
from __future__ import annotations

import pytest
from gateway_harness import REQUEST_TIMEOUT_S, backend, start_gateway
from hostile_cases import Target, assert_serving, params, run


@pytest.fixture(scope="module")
def edge(haproxy, triton, tmp_path_factory):
    proxy = start_gateway([backend("a", triton)], tmp_path_factory.mktemp("hostile-gateway"), repository=triton.repository)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("case", params("gateway"))
def test_case_through_the_gateway(case, edge, triton):
    # long enough for the gateway's own request timeout to answer first
    target = Target("127.0.0.1", edge.ports["http"], edge.ports["grpc"], patience=REQUEST_TIMEOUT_S + 3)

    def survived():
        assert triton.proc.poll() is None, f"tritonserver behind the gateway died on {case.id}: {triton.failure_reason()}"
        assert edge.proc.poll() is None, f"haproxy died on {case.id}"
        assert_serving(target)

    run(case, "gateway", target, survived)
