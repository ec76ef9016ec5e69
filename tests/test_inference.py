"""The served model answers correctly on every protocol, and reports itself through metadata and metrics."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tritonops.models import linear
from tritonops.serving import metrics, smoke

INFER = f"/v2/models/{linear.MODEL}/versions/{linear.VERSION}/infer"


def test_live_and_ready(http):
    assert http.request("GET", "/v2/health/live")[0] == 200
    assert http.request("GET", "/v2/health/ready")[0] == 200
    assert http.request("GET", f"/v2/models/{linear.MODEL}/versions/{linear.VERSION}/ready")[0] == 200


def test_metadata_names_dtypes_shapes(http, triton):
    status, meta = http.get_json(f"/v2/models/{linear.MODEL}")
    assert status == 200
    assert meta["name"] == linear.MODEL and meta["versions"] == ["1"]
    smoke.check_metadata(meta, "HTTP")
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        smoke.check_metadata(client.get_model_metadata(linear.MODEL, as_json=True), "gRPC")


def test_seed_request_exactly_as_users_send_it(http):
    status, body = http.post_json(INFER, linear.seed_request_json())
    assert status == 200, body
    (out,) = body["outputs"]
    assert out["name"] == "y" and out["datatype"] == "FP32" and out["shape"] == [3, 1]
    y = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
    assert linear.check_output(linear.SEED_X, y) is None
    # The weights come from a known line, so the answer is meaningful, not just self-consistent:
    # y ~ 0.5*x0 - 1.25*x1 + 2*x2 + 0.75
    truth = linear.SEED_X @ np.array([[0.5], [-1.25], [2.0]], dtype=np.float32) + 0.75
    np.testing.assert_allclose(y, truth, rtol=1e-3, atol=1e-2)


def test_smoke_client_passes_on_all_three_paths(triton, capsys):
    smoke.run(triton.http_url, triton.grpc_url)  # the shipped repository: linear and embed, 3 paths each
    out = capsys.readouterr().out
    assert out.count("ok  ") == 6 and out.count(f"  {linear.MODEL}  ") == 3 and "HTTP JSON" in out and "HTTP binary" in out and "gRPC" in out


@pytest.mark.parametrize("protocol", ["http-json", "http-binary", "grpc"])
def test_random_inputs_match_torch(triton, protocol, max_batch_size):
    rng = np.random.default_rng(7)
    for rows in (1, 2, 5, max_batch_size):
        x = linear.random_batch(rows, rng)
        y = smoke.infer_grpc(triton.grpc_url, x) if protocol == "grpc" else \
            smoke.infer_http(triton.http_url, x, binary=protocol == "http-binary")
        assert linear.check_output(x, y) is None


def test_max_batch_size_accepted_and_one_more_rejected(triton, max_batch_size):
    x = linear.random_batch(max_batch_size, np.random.default_rng(1))
    assert linear.check_output(x, smoke.infer_http(triton.http_url, x, binary=True)) is None
    too_big = linear.random_batch(max_batch_size + 1, np.random.default_rng(2))
    with pytest.raises(InferenceServerException, match=rf"batch-size must be <= {max_batch_size}"):
        smoke.infer_http(triton.http_url, too_big, binary=True)


def test_a_bad_request_fails_alone(triton):
    """Requests sent together: one carries NaN (refused by model.py), the others are answered."""
    rng = np.random.default_rng(3)
    batches = [linear.random_batch(2, rng) for _ in range(6)]
    batches[2][0, 1] = np.nan
    with httpclient.InferenceServerClient(triton.http_url, concurrency=len(batches)) as client:
        pending = []
        for x in batches:
            inputs, outputs = linear.http_inputs(x, binary=True)
            pending.append(client.async_infer(linear.MODEL, inputs, outputs=outputs))
        for i, (x, request) in enumerate(zip(batches, pending)):
            if i == 2:
                with pytest.raises(InferenceServerException, match="contains NaN or Inf"):
                    request.get_result()
            else:
                assert linear.check_output(x, request.get_result().as_numpy("y")) is None



def test_metrics_count_successful_inferences(triton):
    def successes() -> float:  # Triton's Prometheus text, parsed by the gate's own parser
        return metrics.scrape(triton.metrics_url, linear.MODEL)["nv_inference_request_success"]

    before = successes()
    for _ in range(3):
        smoke.infer_http(triton.http_url, linear.SEED_X, binary=False)
    assert successes() == before + 3
