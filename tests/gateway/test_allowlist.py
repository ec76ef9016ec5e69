"""Allow-list routing at the gateway: the HTTP port passes only KServe v2 inference, health, metadata,
config and statistics; gRPC only ModelInfer, liveness/readiness, metadata, config and statistics.
Everything else is refused by the gateway itself (checked against Triton directly: the control)."""
from __future__ import annotations

import json

import grpc
import pytest
from test_edge import request

from tritonops.models import linear

M = linear.MODEL
REFUSED_HTTP = ["/", "/metrics", "/v1/models", "/v2/models", f"/v2/models/{M}/generate",
                f"/v2/models/{M}/generate_stream", f"/v2/models/{M}/infer/more", f"/v2/models/{M}/versions/1/other",
                "/v2/health/other", "/v2/repository", "/stats"]
PASSED_HTTP = [("GET", "/v2"), ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", f"/v2/models/{M}"),
               ("GET", f"/v2/models/{M}/versions/1"), ("GET", f"/v2/models/{M}/ready"), ("GET", f"/v2/models/{M}/config"),
               ("GET", f"/v2/models/{M}/versions/1/config")]


@pytest.mark.parametrize("path", REFUSED_HTTP)
def test_paths_off_the_list_are_404_at_the_gateway(gw, path):
    for method in ("GET", "POST"):
        status, body = request(gw.http_url, method, path)
        if path == "/v2/repository":
            assert status == 403, (method, path, status, body)  # management: 403 first
            continue
        assert status == 404 and json.loads(body) == {"error": "no such endpoint at the gateway"}, (method, path, status, body)


@pytest.mark.parametrize("method,path", PASSED_HTTP)
def test_listed_paths_reach_triton(gw, method, path):
    assert request(gw.http_url, method, path)[0] == 200, path


def test_statistics_reach_triton_which_asks_for_its_key(gw, replicas):
    """Statistics pass the gateway (docs/security.md): Triton refuses them without the admin key."""
    for path in (f"/v2/models/{M}/stats", "/v2/models/stats"):
        status, body = request(gw.http_url, "GET", path)
        assert b"at the gateway" not in body and status == request(replicas["a"].http_url, "GET", path)[0], (path, status, body)


def grpc_call(url: str, method: str, stream: bool = False) -> grpc.RpcError:
    with grpc.insecure_channel(url) as channel:
        path = f"/inference.GRPCInferenceService/{method}"
        with pytest.raises(grpc.RpcError) as failed:
            if stream:
                list(channel.stream_stream(path)(iter([b""]), timeout=10))
            else:
                channel.unary_unary(path)(b"", timeout=10)
    return failed.value


def test_grpc_stream_infer_is_refused_with_its_reason(gw):
    """A call whose request is complete reads the reason; a stream still sending is answered the same on
    its headers, but HAProxy 2.6 then resets the stream (RST_STREAM CANCEL), which gRPC reports as CANCELLED."""
    err = grpc_call(gw.grpc_url, "ModelStreamInfer")
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED and "ModelStreamInfer is not served at the gateway" in err.details()
    err = grpc_call(gw.grpc_url, "ModelStreamInfer", stream=True)
    assert err.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.CANCELLED), err


@pytest.mark.parametrize("method", ["Bogus", "ModelStreamInferX"])
def test_grpc_methods_off_the_list_are_unimplemented_at_the_gateway(gw, replicas, method):
    err = grpc_call(gw.grpc_url, method)
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED and err.details() == "method not served at the gateway"
    assert "at the gateway" not in (grpc_call(replicas["a"].grpc_url, method).details() or "")  # control
