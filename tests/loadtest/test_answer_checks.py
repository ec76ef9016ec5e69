"""The Locust file's cheap answer checks (tritonops.models.linear.check_*_answer, against answers prepared once)
give the same verdict and message as check_output (tritonclient + the torch reference per request), for
every encoding: JSON, binary tensors and gRPC. No server: the answers are built here, right and wrong."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from tritonops.models import linear

X = linear.random_batch(3, np.random.default_rng(14))
Y = linear.reference(X)
TOL = linear.ATOL + linear.RTOL * np.abs(Y)
DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32}


def wrong_row(y: np.ndarray) -> np.ndarray:
    y = y.copy()
    y[1, 0] += 0.5
    return y


ANSWERS = {  # name: (y as the server would send it, its Triton datatype)
    "right": (Y, "FP32"),
    "within tolerance": ((Y + 0.5 * TOL).astype(np.float32), "FP32"),
    "just outside tolerance": ((Y + 3 * TOL).astype(np.float32), "FP32"),
    "one row wrong": (wrong_row(Y), "FP32"),
    "NaN": (np.where(np.arange(3)[:, None] == 2, np.float32("nan"), Y).astype(np.float32), "FP32"),
    "too few rows": (Y[:2], "FP32"),
    "fp64": (Y.astype(np.float64), "FP64"),
    "int32": (np.rint(Y).astype(np.int32), "INT32"),
    "no output": (None, "FP32"),
}


def json_body(y, datatype):
    outputs = [] if y is None else [{"name": linear.OUTPUT, "datatype": datatype, "shape": list(y.shape),
                                     "data": y.ravel().tolist()}]
    return json.dumps({"model_name": linear.MODEL, "model_version": "1",
                       "outputs": [{"name": "other", "datatype": "FP32", "shape": [1], "data": [0.0]}, *outputs]}).encode()


def binary_body(y, datatype):
    other = np.zeros(2, dtype="<f4").tobytes()  # an output before ours: its bytes come first
    outputs = [{"name": "other", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": len(other)}}]
    data = b""
    if y is not None:
        data = np.ascontiguousarray(y, dtype=np.dtype(DTYPES[datatype]).newbyteorder("<")).tobytes()
        outputs.append({"name": linear.OUTPUT, "datatype": datatype, "shape": list(y.shape),
                        "parameters": {"binary_data_size": len(data)}})
    header = json.dumps({"model_name": linear.MODEL, "outputs": outputs}).encode()
    return header + other + data, len(header)


def grpc_response(y, datatype):
    response = service_pb2.ModelInferResponse(model_name=linear.MODEL)
    response.outputs.add(name="other", datatype="FP32", shape=[1])
    response.raw_output_contents.append(struct.pack("<f", 0.0))
    if y is not None:
        response.outputs.add(name=linear.OUTPUT, datatype=datatype, shape=list(y.shape))
        dtype = np.dtype(DTYPES[datatype]).newbyteorder("<")
        response.raw_output_contents.append(np.ascontiguousarray(y, dtype=dtype).tobytes())
    return service_pb2.ModelInferResponse.FromString(response.SerializeToString())


@pytest.mark.parametrize("name", ANSWERS)
def test_cheap_checks_agree_with_check_output(name):
    y, datatype = ANSWERS[name]
    verdict = linear.check_output(X, y)
    want = linear.expected(X)
    body, header_length = binary_body(y, datatype)
    assert linear.check_json_answer(json_body(y, datatype), want) == verdict
    assert linear.check_binary_answer(body, header_length, want) == verdict
    assert linear.check_grpc_answer(grpc_response(y, datatype), want) == verdict
    assert (verdict is None) == (name in ("right", "within tolerance"))


def test_wrong_values_name_the_row_as_check_output_does():
    want = linear.expected(X, Y)  # a reference computed elsewhere (the pool: one torch call per batch size)
    message = linear.check_grpc_answer(grpc_response(wrong_row(Y), "FP32"), want)
    assert message.startswith("output 'y' differs from the torch reference: row 1 got ")
    assert message == linear.check_output(X, wrong_row(Y))


def test_typed_grpc_contents_and_json_answers_to_binary_requests_are_checked_too():
    want = linear.expected(X)
    typed = service_pb2.ModelInferResponse()
    out = typed.outputs.add(name=linear.OUTPUT, datatype="FP32", shape=[3, 1])
    out.contents.fp32_contents.extend(wrong_row(Y).ravel().tolist())
    assert linear.check_grpc_answer(typed, want) == linear.check_output(X, wrong_row(Y))
    assert linear.check_binary_answer(json_body(Y, "FP32"), None, want) is None


def test_truncated_and_garbled_answers_raise():
    want = linear.expected(X)
    body, header_length = binary_body(Y, "FP32")
    with pytest.raises(ValueError):
        linear.check_binary_answer(body[:-2], header_length, want)
    with pytest.raises(ValueError):
        linear.check_json_answer(b"<html>bad gateway</html>", want)


def test_grpc_request_is_what_tritonclient_sends():
    inputs, outputs = linear.grpc_inputs(X)
    ours = linear.grpc_request(X)
    assert ours.inputs[0].name == inputs[0]._get_tensor().name and list(ours.inputs[0].shape) == [3, 3]
    assert ours.raw_input_contents[0] == inputs[0]._get_content() and ours.outputs[0].name == linear.OUTPUT
