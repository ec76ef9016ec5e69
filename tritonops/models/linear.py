"""The model's client contract: the seed request, the torch reference, request builders, checks.

One module builds requests and checks answers for the smoke CLI, the tests, Locust and the
deploy's final check, so nothing builds a request by hand in a second place.
"""
from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import settings

MODEL = "linear"  # the example model's folder in model_repository/
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


# --- Prepared answers and cheap checks: Locust's request path (no torch, no tritonclient per request) ---
# Same rules and messages as check_output: shape, then dtype, then |y - reference| <= ATOL + RTOL * |reference|
# for every value (np.allclose's rule), the reference computed once from the committed weights.


@dataclass(frozen=True)
class Expected:
    """The right answer to one prepared request, computed once with the torch reference."""

    shape: tuple[int, int]
    values: tuple[float, ...]  # the reference, row-major
    bounds: tuple[float, ...]  # np.allclose's tolerance per value: ATOL + RTOL * |reference|
    raw: bytes  # the reference as little-endian fp32: an answer with exactly these bytes is right


def expected(x: np.ndarray, want: np.ndarray | None = None) -> Expected:
    """Expected answer for x; want: its reference if already computed (reference(x) otherwise)."""
    want = np.ascontiguousarray(reference(x) if want is None else want, dtype="<f4")
    shape = (x.shape[0], OUT_FEATURES)
    if want.shape != shape:
        raise ValueError(f"reference has shape {list(want.shape)}, expected {list(shape)}")
    bounds = ATOL + RTOL * np.abs(want)  # fp32, as np.allclose computes it for fp32 arrays
    return Expected(shape, tuple(want.ravel().tolist()), tuple(bounds.ravel().tolist()), want.tobytes())


def _header_problem(want: Expected, shape, datatype: str) -> str | None:
    if tuple(shape) != want.shape:
        return f"output '{OUTPUT}' has shape {list(shape)}, expected {list(want.shape)}"
    if datatype != DATATYPE:
        from tritonclient.utils import triton_to_np_dtype

        dtype = triton_to_np_dtype(datatype)
        return f"output '{OUTPUT}' has dtype {np.dtype(dtype) if dtype is not None else datatype}, expected float32"
    return None


def _values_problem(want: Expected, values) -> str | None:
    if len(values) != len(want.values):
        raise ValueError(f"output '{OUTPUT}' has {len(values)} values for shape {list(want.shape)}")
    for got, ref, bound in zip(values, want.values, want.bounds):
        if not abs(got - ref) <= bound:  # NaN fails too
            break
    else:
        return None
    errors = [abs(g - r) if g == g else float("inf") for g, r in zip(values, want.values)]
    worst = errors.index(max(errors))
    return (f"output '{OUTPUT}' differs from the torch reference: row {worst} got {np.float32(values[worst])!r}, "
            f"expected {np.float32(want.values[worst])!r}")


def check_json_answer(body: bytes, want: Expected) -> str | None:
    """check_output for a KServe v2 JSON response body (output data in JSON); raises if it is no such body."""
    for out in json.loads(body)["outputs"]:
        if out["name"] == OUTPUT:
            return _header_problem(want, out["shape"], out["datatype"]) or _values_problem(want, out["data"])
    return f"response has no output '{OUTPUT}'"


def check_binary_answer(body: bytes, header_length: int | None, want: Expected) -> str | None:
    """check_output for a response of the binary tensor extension (JSON header, then the tensors' bytes)."""
    if header_length is None:
        return check_json_answer(body, want)
    offset = header_length
    for out in json.loads(body[:header_length])["outputs"]:
        size = out.get("parameters", {}).get("binary_data_size")
        if out["name"] == OUTPUT:
            problem = _header_problem(want, out["shape"], out["datatype"])
            if problem or size is None:
                return problem or _values_problem(want, out["data"])
            raw = body[offset:offset + size]
            if raw == want.raw:
                return None
            if len(raw) != size or size % 4:
                raise ValueError(f"output '{OUTPUT}': {len(raw)} bytes, expected {size} (a multiple of 4)")
            return _values_problem(want, struct.unpack(f"<{size // 4}f", raw))
        offset += size or 0
    return f"response has no output '{OUTPUT}'"


def check_grpc_answer(response, want: Expected) -> str | None:
    """check_output for a gRPC ModelInferResponse (raw_output_contents, or typed contents)."""
    for i, out in enumerate(response.outputs):
        if out.name == OUTPUT:
            problem = _header_problem(want, out.shape, out.datatype)
            if problem:
                return problem
            if i < len(response.raw_output_contents):
                raw = response.raw_output_contents[i]
                if raw == want.raw:
                    return None
                if len(raw) % 4:
                    raise ValueError(f"output '{OUTPUT}': {len(raw)} bytes, not a multiple of 4")
                return _values_problem(want, struct.unpack(f"<{len(raw) // 4}f", raw))
            return _values_problem(want, out.contents.fp32_contents)
    return f"response has no output '{OUTPUT}'"


def grpc_request(x: np.ndarray):
    """The ModelInferRequest that tritonclient.grpc sends for x (raw input contents, output y requested)."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=MODEL, model_version=VERSION)
    request.inputs.add(name=INPUT, datatype=DATATYPE, shape=list(x.shape))
    request.raw_input_contents.append(np.ascontiguousarray(x, dtype="<f4").tobytes())
    request.outputs.add(name=OUTPUT)
    return request
