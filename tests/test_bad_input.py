"""Bad requests get a 4xx with a clear message, and the server stays READY afterwards."""
from __future__ import annotations

import copy

import pytest
from hostile_cases import UpstreamDeviation

from tritonops.models import linear

INFER = f"/v2/models/{linear.MODEL}/versions/{linear.VERSION}/infer"


def mutated(**changes) -> dict:
    body = copy.deepcopy(linear.seed_request_json())
    body["inputs"][0].update(changes)
    return body


# (id, path, body, expected status, fragment of Triton's message)
CASES = [
    ("wrong-input-name", INFER, mutated(name="z"), 400, "unexpected inference input 'z'"),
    ("wrong-dtype", INFER, mutated(datatype="INT32", data=[[1, 2, 3]] * 3), 400, "data-type is 'INT32', but model 'linear' expects 'FP32'"),
    ("wrong-shape", INFER, mutated(shape=[3, 4], data=[[1.0, 2.0, 3.0, 4.0]] * 3), 400, "unexpected shape for input 'x'"),
    ("empty-batch", INFER, mutated(shape=[0, 3], data=[]), 400, "input byte size mismatch for input 'x'"),
    ("non-finite-values", INFER, mutated(data=[[float("nan"), 1.0, 2.0]] * 3), 400, "contains NaN or Inf"),
    ("unknown-model", "/v2/models/nosuch/infer", linear.seed_request_json(), 404, "unknown model: 'nosuch'"),
    ("unknown-version", f"/v2/models/{linear.MODEL}/versions/7/infer", linear.seed_request_json(), 404, "version 7 is not found"),
]
# Triton 2.51's HTTP frontend reports body parse failures as INTERNAL, i.e. 500, not 400
# (upstream triton-inference-server/server#8762). The message is still clear; see below.
PARSE_CASES = [
    ("malformed-json", b'{"inputs": [', "failed to parse the request JSON buffer"),
    ("data-length-not-shape", mutated(data=[1.0, 2.0]), "Shape does not match true shape of 'data'"),
]


def assert_still_ready(http):
    assert http.request("GET", "/v2/health/ready")[0] == 200
    assert http.request("GET", f"/v2/models/{linear.MODEL}/versions/{linear.VERSION}/ready")[0] == 200
    status, body = http.post_json(INFER, linear.seed_request_json())
    assert status == 200, body


@pytest.mark.parametrize("path,body,status,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_request_answered_with_4xx_and_reason(http, path, body, status, fragment):
    got, answer = http.post_json(path, body)
    assert got == status, answer
    assert fragment in answer["error"], answer
    assert_still_ready(http)


@pytest.mark.parametrize("body,fragment", [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_unparseable_body_gets_clear_error_and_server_survives(http, body, fragment):
    got, answer = http.post_json(INFER, body)
    assert got in range(400, 600) and fragment in answer["error"], (got, answer)
    assert_still_ready(http)


# raises=: only Triton 2.51's documented 500 is the expected failure; any other status (or error)
# fails the test, and a 4xx passes, which strict turns into a failure to update this test.
@pytest.mark.xfail(strict=True, raises=UpstreamDeviation,
                   reason="Triton 2.51 answers body parse failures with 500 (server#8762); "
                          "strict: this starts failing once the pinned Triton answers 4xx")
@pytest.mark.parametrize("body,fragment", [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_unparseable_body_status_is_4xx(http, body, fragment):
    got, answer = http.post_json(INFER, body)
    if got == 500 and fragment in answer.get("error", ""):
        raise UpstreamDeviation(f"500, not 4xx: {answer}")
    assert 400 <= got < 500, (got, answer)
