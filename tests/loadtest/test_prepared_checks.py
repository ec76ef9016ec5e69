"""loadtests/models.py's cheap answer checks (tritonops.models.prepared, against outputs prepared once from a
descriptor's sample) give the same verdict as tritonops.models.descriptor.compare (numpy per answer, what smoke
uses), for JSON and binary answers, numbers and BYTES. No server: the answers are built here."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.utils import serialize_byte_tensor

from tritonops.models import descriptor, prepared

DOC = {"samples": [{
    "inputs": {"x": {"datatype": "INT32", "shape": [2, 1], "data": [1, 2]}},
    "outputs": {"y": {"datatype": "FP32", "shape": [2, 2], "data": [0.5, 1.25, -3.0, 100.0], "rtol": 1e-3, "atol": 1e-4},
                "n": {"datatype": "INT64", "shape": [2, 1], "data": [7, -8]},
                "w": {"datatype": "BYTES", "shape": [2, 1], "data": ["héllo", ""]}}}]}
DESC = descriptor.parse(descriptor.Path("m/tritonops.json"), DOC)
(SAMPLE,) = DESC.samples
WANT = tuple(prepared.expected_output(t) for t in SAMPLE.outputs)
RIGHT = {t.name: t.array() for t in SAMPLE.outputs}
DATATYPES = {t.name: t.datatype for t in SAMPLE.outputs}


def changed(name, value=None, datatype=None):
    answer = {k: v.copy() for k, v in RIGHT.items()}
    types = dict(DATATYPES)
    if value is None:
        del answer[name]
    else:
        answer[name] = value
    if datatype:
        types[name] = datatype
    return answer, types


ANSWERS = {
    "right": (RIGHT, DATATYPES),
    "within tolerance": changed("y", (RIGHT["y"] * (1 + 5e-4)).astype(np.float32)),
    "outside tolerance": changed("y", (RIGHT["y"] * (1 + 5e-3)).astype(np.float32)),
    "NaN": changed("y", np.where(RIGHT["y"] > 50, np.nan, RIGHT["y"]).astype(np.float32)),
    "int off by one": changed("n", RIGHT["n"] + np.array([[0], [1]])),
    "int as int32": changed("n", RIGHT["n"].astype(np.int32), "INT32"),
    "bytes differ": changed("w", np.array([[b"hello"], [b""]], dtype=object)),
    "bytes shape": changed("w", np.array([[b"h\xc3\xa9llo", b""]], dtype=object)),
    "missing output": changed("w"),
}


def json_body(answer, types) -> bytes:
    outputs = []
    for name, y in answer.items():
        data = [v.decode() for v in y.ravel()] if types[name] == "BYTES" else y.ravel().tolist()
        outputs.append({"name": name, "datatype": types[name], "shape": list(y.shape), "data": data})
    return json.dumps({"model_name": "m", "outputs": outputs}).encode()


def binary_body(answer, types) -> tuple[bytes, int]:
    outputs, blobs = [], []
    for name, y in answer.items():
        raw = serialize_byte_tensor(y).item() if types[name] == "BYTES" else np.ascontiguousarray(y).tobytes()
        outputs.append({"name": name, "datatype": types[name], "shape": list(y.shape),
                        "parameters": {"binary_data_size": len(raw)}})
        blobs.append(raw)
    header = json.dumps({"model_name": "m", "outputs": outputs}).encode()
    return header + b"".join(blobs), len(header)


@pytest.mark.parametrize("case", list(ANSWERS))
def test_cheap_checks_agree_with_descriptor_compare(case):
    answer, types = ANSWERS[case]
    reference = descriptor.compare(SAMPLE, answer)
    by_json = prepared.check_json_answer(json_body(answer, types), WANT)
    by_binary = prepared.check_binary_answer(*binary_body(answer, types), WANT)
    assert (by_json is None) == (by_binary is None) == (reference is None), (reference, by_json, by_binary)
    assert (reference is None) == (case in ("right", "within tolerance"))


def test_messages_name_the_output_and_value():
    answer, types = ANSWERS["int off by one"]
    assert prepared.check_json_answer(json_body(answer, types), WANT) == "output 'n' value 1: got -7, expected -8"
    answer, types = ANSWERS["bytes differ"]
    assert prepared.check_binary_answer(*binary_body(answer, types), WANT) == \
        "output 'w' value 0: got 'hello', expected 'héllo'"


def test_the_request_is_the_sample_as_tritonclient_encodes_it():
    body, headers = prepared.http_request(SAMPLE, ["y", "n", "w"], binary=False)
    assert headers == {"Content-Type": "application/json"}
    request = json.loads(body)
    assert request["inputs"] == [{"name": "x", "shape": [2, 1], "datatype": "INT32", "data": [1, 2]}]
    assert [o["name"] for o in request["outputs"]] == ["y", "n", "w"]
    body, headers = prepared.http_request(SAMPLE, ["y"], binary=True)
    length = int(headers["Inference-Header-Content-Length"])
    assert body[length:] == np.array([1, 2], dtype="<i4").tobytes()
