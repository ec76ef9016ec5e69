"""loadtests/embed.py's cheap answer checks (tritonops.models.embedding.check_json_answer / check_binary_answer,
against references computed once) give check_output's verdict and message on JSON and binary answers,
and catch what cosine cannot: embeddings that are not unit vectors. No server: answers are built here."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tritonops.models import embedding

TEXTS = embedding.SENTENCES[:3]
WANT = embedding.reference(TEXTS)
DTYPES = {"FP32": np.float32, "FP64": np.float64}


def shifted(e: np.ndarray) -> np.ndarray:
    e = e.copy()
    e[1] += 0.1
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


ANSWERS = {  # name: (embeddings as the server would send them, their Triton datatype)
    "right": (WANT, "FP32"),
    "rounding noise": ((WANT + 1e-6).astype(np.float32), "FP32"),
    "one row shifted": (shifted(WANT), "FP32"),
    "NaN": (np.where(np.arange(3)[:, None] == 2, np.float32("nan"), WANT).astype(np.float32), "FP32"),
    "too few rows": (WANT[:2], "FP32"),
    "fp64": (WANT.astype(np.float64), "FP64"),
    "no output": (None, "FP32"),
    "not normalised": ((WANT * 3).astype(np.float32), "FP32"),
}


def json_body(e, datatype):
    outputs = [] if e is None else [{"name": embedding.OUTPUT, "datatype": datatype, "shape": list(e.shape),
                                     "data": e.ravel().tolist()}]
    return json.dumps({"model_name": embedding.MODEL, "outputs": outputs}).encode()


def binary_body(e, datatype):
    other = np.zeros(2, dtype="<f4").tobytes()  # an output before ours: its bytes come first
    outputs = [{"name": "other", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": len(other)}}]
    data = b""
    if e is not None:
        data = np.ascontiguousarray(e, dtype=np.dtype(DTYPES[datatype]).newbyteorder("<")).tobytes()
        outputs.append({"name": embedding.OUTPUT, "datatype": datatype, "shape": list(e.shape),
                        "parameters": {"binary_data_size": len(data)}})
    header = json.dumps({"model_name": embedding.MODEL, "outputs": outputs}).encode()
    return header + other + data, len(header)


@pytest.mark.parametrize("name", ANSWERS)
def test_cheap_checks_agree_with_check_output_norm_included(name):
    e, datatype = ANSWERS[name]
    verdict = embedding.check_output(TEXTS, e, WANT)
    assert embedding.check_json_answer(json_body(e, datatype), TEXTS, WANT) == verdict
    assert embedding.check_binary_answer(*binary_body(e, datatype), TEXTS, WANT) == verdict
    if name == "not normalised":  # cosine is blind to scale: the norm rule is what refuses it
        assert verdict.startswith("output 'embedding' is not L2-normalised: row ") and "has norm 3.000000" in verdict
    assert (verdict is None) == (name in ("right", "rounding noise"))


def test_truncated_and_garbled_answers_raise():
    body, header_length = binary_body(WANT, "FP32")
    with pytest.raises(ValueError):
        embedding.check_binary_answer(body[:-2], header_length, TEXTS, WANT)
    with pytest.raises(ValueError):
        embedding.check_json_answer(b"<html>bad gateway</html>", TEXTS, WANT)


@pytest.mark.parametrize("binary", [False, True])
def test_request_bodies_carry_the_texts(binary):
    """What Locust sends, built by tritonclient: the texts as a [n, 1] BYTES tensor, the embeddings asked
    for in the same encoding."""
    body, headers = embedding.http_body(TEXTS, binary)
    length = headers.get("Inference-Header-Content-Length")
    header = json.loads(body[:int(length)] if length else body)
    (inp,) = header["inputs"]
    assert (inp["name"], inp["datatype"], inp["shape"]) == (embedding.INPUT, "BYTES", [len(TEXTS), 1])
    assert header["outputs"] == [{"name": embedding.OUTPUT, "parameters": {"binary_data": binary}}]
    if binary:  # each element: 4-byte little-endian length, then its UTF-8 bytes
        assert body[int(length):] == b"".join(len(t.encode()).to_bytes(4, "little") + t.encode() for t in TEXTS)
    else:
        assert inp["data"] == list(TEXTS)
