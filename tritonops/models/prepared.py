"""Requests built once from a descriptor's sample, and cheap checks of their answers (loadtests/models.py's
request path: no tritonclient, no numpy per answer). The rules are tritonops.models.descriptor.compare's: every
expected output present with its shape and datatype, numbers within |got - want| <= atol + rtol * |want|
(np.isclose's rule; NaN fails), BYTES equal; in the binary form, identical bytes pass at once."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from . import descriptor

_STRUCT = {"BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q", "INT8": "b", "INT16": "h",
           "INT32": "i", "INT64": "q", "FP16": "e", "FP32": "f", "FP64": "d"}


@dataclass(frozen=True)
class Output:
    """One expected output: what the JSON form says and the raw bytes the binary form carries."""

    name: str
    datatype: str
    shape: list[int]
    values: tuple  # numbers (bool as 0/1) or, for BYTES, str
    bounds: tuple  # per value: atol + rtol * |want| (numbers only)
    raw: bytes  # little-endian tensor bytes; BYTES: 4-byte length, then the bytes, per element

    def problem(self, shape, datatype: str, values) -> str | None:
        if list(shape) != self.shape:
            return f"output '{self.name}' has shape {list(shape)}, expected {self.shape}"
        if datatype != self.datatype:
            return f"output '{self.name}' has datatype {datatype}, expected {self.datatype}"
        if len(values) != len(self.values):
            return f"output '{self.name}' has {len(values)} values, expected {len(self.values)}"
        if self.datatype == "BYTES":
            for i, (got, want) in enumerate(zip(values, self.values)):
                if got != want:
                    return f"output '{self.name}' value {i}: got {got!r}, expected {want!r}"
            return None
        for i, (got, want, bound) in enumerate(zip(values, self.values, self.bounds)):
            if not abs(got - want) <= bound:  # NaN fails too
                return f"output '{self.name}' value {i}: got {got!r}, expected {want!r}"
        return None

    def decode(self, raw: bytes) -> list:
        """The values of a binary output."""
        if self.datatype != "BYTES":
            code = _STRUCT[self.datatype]
            return list(struct.unpack(f"<{len(raw) // struct.calcsize(code)}{code}", raw))
        values, offset = [], 0
        while offset < len(raw):
            (n,) = struct.unpack_from("<I", raw, offset)
            values.append(raw[offset + 4:offset + 4 + n].decode(errors="replace"))
            offset += 4 + n
        return values


def expected_output(t: descriptor.Tensor) -> Output:
    array = t.array()
    if t.datatype == "BYTES":
        values = tuple(v.decode() for v in array.ravel())
        raw = b"".join(struct.pack("<I", len(v)) + v for v in array.ravel())
        return Output(t.name, t.datatype, list(t.shape), values, (), raw)
    flat = array.ravel()
    values = tuple(int(v) if t.datatype == "BOOL" else v for v in flat.tolist())
    bounds = tuple(t.atol + t.rtol * abs(float(v)) for v in values)
    raw = np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("<")).tobytes()
    return Output(t.name, t.datatype, list(t.shape), values, bounds, raw)


def check_json_answer(body: bytes, want: tuple[Output, ...]) -> str | None:
    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
    for w in want:
        got = outputs.get(w.name)
        if got is None:
            return f"response has no output '{w.name}'"
        values = got["data"]
        if w.datatype == "BOOL":
            values = [int(v) for v in values]
        problem = w.problem(got["shape"], got["datatype"], values)
        if problem:
            return problem
    return None


def check_binary_answer(body: bytes, header_length: int | None, want: tuple[Output, ...]) -> str | None:
    if header_length is None:
        return check_json_answer(body, want)
    offset, found = header_length, {}
    for out in json.loads(body[:header_length])["outputs"]:
        size = out.get("parameters", {}).get("binary_data_size")
        found[out["name"]] = (out, None if size is None else body[offset:offset + size])
        offset += size or 0
    for w in want:
        if w.name not in found:
            return f"response has no output '{w.name}'"
        out, raw = found[w.name]
        if raw is not None and raw == w.raw and list(out["shape"]) == w.shape and out["datatype"] == w.datatype:
            continue
        values = out.get("data") if raw is None else w.decode(raw)
        problem = w.problem(out["shape"], out["datatype"], [int(v) for v in values] if w.datatype == "BOOL" else values)
        if problem:
            return problem
    return None


def http_request(sample: descriptor.Sample, output_names: list[str], binary: bool) -> tuple[bytes, dict[str, str]]:
    """Body and headers of the KServe v2 HTTP request for sample (as tritonclient builds them), asking for
    output_names."""
    import tritonclient.http as httpclient

    inputs = []
    for t in sample.inputs:
        inp = httpclient.InferInput(t.name, list(t.shape), t.datatype)
        inp.set_data_from_numpy(t.array(), binary_data=binary)
        inputs.append(inp)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in output_names]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    headers = {"Content-Type": "application/json"}
    if json_size is not None:
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(json_size)}
    return body, headers
