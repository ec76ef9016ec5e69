"""The model's client contract: the seed request, the torch reference, request builders, checks.

One module builds requests and checks answers for the smoke CLI, the tests, Locust and the
deploy's final check, so nothing builds a request by hand in a second place.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from . import settings

MODEL = settings.MODEL_NAME
VERSION = "1"
INPUT, OUTPUT = "x", "y"
DATATYPE = "FP32"
IN_FEATURES, OUT_FEATURES = 3, 1
SEED_X = np.array([[2.0, 3.0, 4.0], [1.1, 2.3, 10.3], [2.0, 3.0, 4.0]], dtype=np.float32)
WEIGHTS = settings.MODEL_REPOSITORY / MODEL / VERSION / "linear" / "pytorch_model.bin"
# fp32 results of the same weights may differ in the last bits between torch builds/devices.
RTOL, ATOL = 1e-5, 1e-5


def seed_request_json() -> dict:
    """The seed's KServe v2 JSON body, exactly as users send it with curl."""
    return {"inputs": [{"name": INPUT, "datatype": DATATYPE, "shape": list(SEED_X.shape), "data": SEED_X.tolist()}]}


@functools.cache
def _weights(path: Path = WEIGHTS) -> tuple[np.ndarray, np.ndarray]:
    import torch  # heavy: only where a reference is needed

    state = torch.load(path, map_location="cpu", weights_only=True)
    return state["weight"].numpy(), state["bias"].numpy()


def reference(x: np.ndarray, weights: Path = WEIGHTS) -> np.ndarray:
    """y = x W^T + b from the committed state_dict, computed with torch in fp32."""
    import torch

    w, b = _weights(weights)
    with torch.inference_mode():
        return torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()


def random_batch(rows: int, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-10.0, 10.0, size=(rows, IN_FEATURES)).astype(np.float32)


def http_inputs(x: np.ndarray, binary: bool = False):
    import tritonclient.http as httpclient

    inp = httpclient.InferInput(INPUT, list(x.shape), DATATYPE)
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput(OUTPUT, binary_data=binary)
    return [inp], [out]


def http_body(x: np.ndarray, binary: bool = False) -> tuple[bytes, dict[str, str]]:
    """Request body and headers for /v2/models/<m>/versions/<v>/infer, built by tritonclient."""
    import tritonclient.http as httpclient

    inputs, outputs = http_inputs(x, binary)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    headers = {"Content-Type": "application/json"}
    if json_size is not None:
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(json_size)}
    return body, headers


def parse_http_response(body: bytes, headers) -> np.ndarray:
    import tritonclient.http as httpclient

    header_length = headers.get("Inference-Header-Content-Length")
    result = httpclient.InferResult.from_response_body(
        body, header_length=int(header_length) if header_length else None
    )
    return result.as_numpy(OUTPUT)


def grpc_inputs(x: np.ndarray):
    import tritonclient.grpc as grpcclient

    inp = grpcclient.InferInput(INPUT, list(x.shape), DATATYPE)
    inp.set_data_from_numpy(x)
    return [inp], [grpcclient.InferRequestedOutput(OUTPUT)]


def check_output(x: np.ndarray, y: np.ndarray | None) -> str | None:
    """None when y is the right answer for x, else a message saying what is wrong."""
    if y is None:
        return f"response has no output '{OUTPUT}'"
    expected_shape = (x.shape[0], OUT_FEATURES)
    if tuple(y.shape) != expected_shape:
        return f"output '{OUTPUT}' has shape {list(y.shape)}, expected {list(expected_shape)}"
    if y.dtype != np.float32:
        return f"output '{OUTPUT}' has dtype {y.dtype}, expected float32"
    want = reference(x)
    if not np.allclose(y, want, rtol=RTOL, atol=ATOL):
        worst = int(np.argmax(np.abs(y - want)))
        return f"output '{OUTPUT}' differs from the torch reference: row {worst} got {y.ravel()[worst]!r}, expected {want.ravel()[worst]!r}"
    return None
