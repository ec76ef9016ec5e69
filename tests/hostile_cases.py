"""The hostile-input battery (issue 11, item 7): one table of cases, each with how it is sent and
what it must get directly from Triton 2.51 and through the gateway.

Three runs use this table: straight to a wheel server (tests/test_hostile_direct.py), through a
LocalGateway in front of one (tests/gateway/test_hostile_gateway.py), and through the compose
stack's gateway with the container's RestartCount checked (tests/docker/test_hostile_stack.py).
After every case the run checks the server is READY and answers the seed request correctly.

An outcome with `upstream` set is where Triton 2.51 answers something other than a clear 4xx (a
500, a 200, or nothing): the run asserts that exact behaviour and the server's survival, then
raises UpstreamDeviation, which the run marks as a strict xfail. A newer Triton that answers 4xx
fails the run (the observed status no longer matches) and the table gets updated.

Imported as `hostile_cases` (tests/ is on sys.path, like hostile and ci_policy).
`python tests/hostile_cases.py` prints docs/security.md's table (Hostile input).
"""
from __future__ import annotations

import json
import resource
import socket
import time
from dataclasses import dataclass
from typing import Callable

import grpc
import hostile
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from tritonops import settings
from tritonops.models import linear
from tritonops.serving import smoke

INFER = f"/v2/models/{linear.MODEL}/versions/{linear.VERSION}/infer"
MAX_BODY = int(settings.get("GATEWAY_MAX_BODY_BYTES"))
MIB64 = 64 << 20
IDLE_CONNECTIONS = 1000
IDLE_SOURCE = "127.0.0.3"
NESTED_CRASH_DEPTH = 1_000_000   # kills a bare 2.51 server (8 MiB stack); 100 000 did not
NESTED_UNDER_CAP = MAX_BODY // 2 - 16  # the deepest '[...]' that fits under the gateway's cap

# Where the upstream deviations come from.
PARSE_500 = "Triton 2.51 answers JSON it cannot use with 500 INTERNAL, not 400 (server#8762)"
NO_TIMEOUT = ("Triton 2.51's HTTP server has no request timeout: it waits for the missing bytes and "
              "never answers (the gateway answers 408 after GATEWAY_TIMEOUT_REQUEST)")
BAD_FRAMING = "Triton 2.51 drops the connection without an answer (no 400) on a malformed request head"
SHAPE_WRAP = ("Triton 2.51 truncates the batch size to 32 bits and the byte size wraps (fixed upstream: "
              "core#434, common#151): [2^62+3, 3] passes as [3, 3]")
NESTED_CRASH = ("stack overflow: Triton 2.51's recursive rapidjson parse of a million nested arrays kills the "
                "server (SIGSEGV); fixed upstream by iterative parsing (common#156, server#8745)")


class UpstreamDeviation(Exception):
    """Triton 2.51 did exactly what the table documents for this case, which is not a clear 4xx."""


@dataclass(frozen=True)
class Target:
    """Where a run sends the cases: Triton itself, a LocalGateway or the compose stack's gateway."""

    host: str
    http_port: int
    grpc_port: int
    patience: float  # seconds to wait for an answer to an incomplete request before calling it none

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"


@dataclass(frozen=True)
class Outcome:
    """What a case gets: an HTTP status, a gRPC code name, None (no answer at all) or "open"
    (the connection was still open when the client gave up); `fragment` must be in the answer."""

    status: int | str | None | tuple
    fragment: str = ""
    upstream: str = ""   # why this is not a clear 4xx (then: strict xfail)
    crash: bool = False  # the case kills the server: the run gives it a server of its own


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    transport: str  # http | grpc
    what: str
    send: Callable[[Target], tuple]
    direct: Outcome
    gateway: Outcome

    def outcome(self, route: str) -> Outcome:
        return self.direct if route == "direct" else self.gateway


# ---- senders -------------------------------------------------------------------------------------

SEED = json.dumps(linear.seed_request_json(), separators=(",", ":")).encode()


def seed_input(**changes) -> dict:
    return {**linear.seed_request_json()["inputs"][0], **changes}


def body_of(**top) -> bytes:
    return json.dumps(top).encode()  # NaN and ±Inf come out as the literals NaN, Infinity, -Infinity


def with_value(value) -> bytes:
    """The seed request with one element of 'data' replaced."""
    data = linear.SEED_X.tolist()
    data[1][1] = value
    return body_of(inputs=[seed_input(data=data)])


def raw_request(method: str, path: str, body: bytes = b"", headers: dict | None = None, length=None) -> bytes:
    """Request bytes as written, so framing errors reach the server; length=False: no Content-Length."""
    head = {"Host": "triton", **(headers or {})}
    if length is not False and (body or method != "GET"):
        head.setdefault("Content-Length", str(len(body) if length is None else length))
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode("utf-8") + body


def http(request: bytes) -> Callable[[Target], tuple]:
    def send(target: Target) -> tuple:
        answer = hostile.send_raw(target.host, target.http_port, request, timeout=target.patience)
        return hostile.status_of(answer), answer.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")
    return send


def post(body: bytes, path: str = INFER, **kwargs) -> Callable[[Target], tuple]:
    return http(raw_request("POST", path, body, {"Content-Type": "application/json"}, **kwargs))


def binary(shape, data: bytes, header_length=None, data_size=None) -> Callable[[Target], tuple]:
    """The binary tensor extension: a JSON header, then the tensor's bytes."""
    header = body_of(inputs=[{"name": linear.INPUT, "datatype": linear.DATATYPE, "shape": list(shape),
                              "parameters": {"binary_data_size": len(data) if data_size is None else data_size}}])
    body = header + data
    return http(raw_request("POST", INFER, body, {"Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": len(header) if header_length is None else header_length}))


def grpc_call(shape=linear.SEED_X.shape, raw: bytes | None = linear.SEED_X.tobytes(), *, datatype=linear.DATATYPE,
              model=linear.MODEL, version=linear.VERSION, inputs=1, outputs=(linear.OUTPUT,),
              contents=None, parameters=None) -> Callable[[Target], tuple]:
    """One ModelInfer built field by field with the service's own protobufs (no client-side checks)."""
    def send(target: Target) -> tuple:
        request = pb.ModelInferRequest(model_name=model, model_version=version)
        for _ in range(inputs):
            tensor = request.inputs.add(name=linear.INPUT, datatype=datatype, shape=list(shape))
            if contents is not None:
                tensor.contents.CopyFrom(pb.InferTensorContents(fp32_contents=contents))
            for key, value in (parameters or {}).items():
                setattr(tensor.parameters[key], "string_param" if isinstance(value, str) else "int64_param", value)
            if raw is not None:
                request.raw_input_contents.append(raw)
        for name in outputs:
            request.outputs.add(name=name)
        unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        with grpc.insecure_channel(target.grpc_url, options=unlimited) as channel:
            try:
                answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
            except grpc.RpcError as exc:
                return exc.code().name, exc.details() or ""
        return "OK", f"output shape {list(answer.outputs[0].shape)}"
    return send


def slowloris(target: Target) -> tuple:
    elapsed, answer = hostile.slow_headers(target.host, target.http_port, give_up=target.patience)
    if elapsed >= target.patience:
        return "open", f"still open after {elapsed:.1f}s"
    return hostile.status_of(answer), f"cut after {elapsed:.1f}s"


def idle_connections(port_key: str) -> Callable[[Target], tuple]:
    """Hold IDLE_CONNECTIONS connections open, saying nothing, and send the seed request meanwhile."""
    def send(target: Target) -> tuple:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < IDLE_CONNECTIONS + 256:
            if hard != resource.RLIM_INFINITY and hard < IDLE_CONNECTIONS + 256:
                pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {IDLE_CONNECTIONS + 256}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        port = target.http_port if port_key == "http" else target.grpc_port
        held = []
        try:
            # From an address of their own (loopback has 127/8): the gateway limits connections per source
            # (GATEWAY_CONN_PER_SOURCE), and these are another client than the seed's.
            source = (IDLE_SOURCE, 0) if target.host.startswith("127.") else None
            for _ in range(IDLE_CONNECTIONS):
                try:
                    held.append(socket.create_connection((target.host, port), timeout=10, source_address=source))
                except OSError:  # refused or reset at accept: over the gateway's per-source limit
                    pass
            time.sleep(0.5)  # let the server accept them all before the real request
            if port_key == "http":
                y = smoke.infer_http(target.http_url, linear.SEED_X, binary=False)
            else:
                y = smoke.infer_grpc(target.grpc_url, linear.SEED_X)
            problem = linear.check_output(linear.SEED_X, y)
            return ("OK" if port_key == "grpc" else 200) if problem is None else "wrong", problem or "seed answered correctly"
        finally:
            for s in held:
                s.close()
    return send


# ---- the table -----------------------------------------------------------------------------------

def same(status, fragment: str = "", upstream: str = "") -> dict:
    """The gateway passes the request on: Triton's own answer both ways."""
    outcome = Outcome(status, fragment, upstream)
    return {"direct": outcome, "gateway": outcome}


X = linear.SEED_X
ROWS_64MIB = MIB64 // X[0].nbytes  # a [rows, 3] FP32 tensor of 64 MiB
ROWS_100KIB = (100 << 10) // X[0].nbytes
WRAP = 2 ** 62 + 3                 # * 3 elements * 4 bytes wraps to 36 bytes in 64 bits
TOO_LARGE = f"request body larger than {MAX_BODY} bytes"
NAN_OR_INF = "contains NaN or Inf"
HAPROXY_400 = "invalid request"

CASES = [
    # Size
    Case("body-64mib", "size", "http", "64 MiB body: a [5.6M, 3] binary tensor",
         binary((ROWS_64MIB, 3), b"\0" * (ROWS_64MIB * 12)),
         Outcome(400, "batch-size must be <= 64"), Outcome(413, TOO_LARGE)),
    Case("content-length-larger", "size", "http", "Content-Length 1000, 110 bytes sent",
         post(SEED, length=1000), Outcome(None, upstream=NO_TIMEOUT), Outcome(408, "Request Time-out")),
    Case("content-length-64mib", "size", "http", "Content-Length 64 MiB, 110 bytes sent",
         post(SEED, length=MIB64), Outcome(None, upstream=NO_TIMEOUT), Outcome(413, TOO_LARGE)),
    Case("content-length-2^40", "size", "http", "Content-Length 2^40 (HAProxy's hdr_val is 32-bit: the gateway also counts digits)",
         post(SEED, length=2 ** 40), Outcome(None, upstream=NO_TIMEOUT), Outcome(413, TOO_LARGE)),
    Case("content-length-negative", "size", "http", "Content-Length -1",
         post(SEED, length=-1), Outcome(None, upstream=BAD_FRAMING), Outcome(400, HAPROXY_400)),
    Case("content-length-twice", "size", "http", "two different Content-Length headers (smuggling)",
         http(raw_request("POST", INFER, SEED, {"Content-Length": len(SEED), "content-length": len(SEED) + 5})),
         Outcome(None, upstream=NO_TIMEOUT), Outcome(400, HAPROXY_400)),
    Case("chunked-and-content-length", "size", "http", "Transfer-Encoding: chunked plus Content-Length",
         http(raw_request("POST", INFER, b"0\r\n\r\n", {"Transfer-Encoding": "chunked"})),
         Outcome(400, "expecting 5 more bytes"), Outcome(400, "byte size mismatch")),
    # JSON structure
    Case("nested-1m", "json", "http", "arrays nested a million levels deep (2 MB)",
         post(b"[" * NESTED_CRASH_DEPTH + b"]" * NESTED_CRASH_DEPTH),
         Outcome(None, upstream=NESTED_CRASH, crash=True), Outcome(413, TOO_LARGE)),
    Case("nested-under-cap", "json", "http", f"arrays nested {NESTED_UNDER_CAP} deep: the deepest under the cap",
         post(b"[" * NESTED_UNDER_CAP + b"]" * NESTED_UNDER_CAP),
         **same(500, "non-existing object member 'inputs'", PARSE_500)),
    Case("duplicate-keys", "json", "http", 'input with "name" twice: the first ("z") wins',
         post(SEED.replace(b'"name":"x"', b'"name":"z","name":"x"')), **same(400, "unexpected inference input 'z'")),
    Case("trailing-garbage", "json", "http", "valid request followed by garbage",
         post(SEED + b"garbage"), **same(500, "must not be followed by other values", PARSE_500)),
    Case("invalid-utf8-name", "json", "http", "input name with a 0xff byte",
         post(SEED.replace(b'"name":"x"', b'"name":"x\xff"')), **same(400, "unexpected inference input")),
    Case("invalid-utf8-id", "json", "http", "request id with 0xff 0xfe bytes",
         post(SEED.replace(b'{"inputs"', b'{"id":"\xff\xfe","inputs"')),
         **same(200, '"shape":[3,1]', "Triton 2.51 does not validate UTF-8: it answers and echoes the bytes in 'id'")),
    # Values
    Case("nan", "values", "http", "NaN literal in data", post(with_value(float("nan"))), **same(400, NAN_OR_INF)),
    Case("inf", "values", "http", "-Infinity literal in data", post(with_value(float("-inf"))), **same(400, NAN_OR_INF)),
    Case("1e39", "values", "http", "1e39 (overflows FP32 to inf)", post(with_value(1e39)), **same(400, NAN_OR_INF)),
    Case("string-in-data", "values", "http", 'a string in data', post(with_value("2.3")),
         **same(500, "non-number as double", PARSE_500)),
    Case("bool-in-data", "values", "http", "a boolean in data", post(with_value(True)),
         **same(500, "non-number as double", PARSE_500)),
    Case("null-in-data", "values", "http", "null in data", post(with_value(None)),
         **same(500, "non-number as double", PARSE_500)),
    Case("ragged-same-count", "values", "http", "ragged rows [[3],[2],[4]] with 9 values in all",
         post(body_of(inputs=[seed_input(data=[[1, 2, 3], [1, 2], [1, 2, 3, 4]])])),
         **same(200, '"shape":[3,1]', "Triton 2.51 flattens 'data' and only counts elements: ragged rows pass")),
    Case("ragged-wrong-count", "values", "http", "ragged rows with 8 values for [3, 3]",
         post(body_of(inputs=[seed_input(data=[[1, 2, 3], [1, 2], [1, 2, 3]])])),
         **same(500, "Shape does not match", PARSE_500)),
    # Shapes
    Case("negative-dim", "shapes", "http", "shape [-1, 3]", post(body_of(inputs=[seed_input(shape=[-1, 3])])),
         **same(500, "non-unsigned-integer", PARSE_500)),
    Case("dims-product-2^62", "shapes", "http", "shape [2^62, 3] with 9 values",
         post(body_of(inputs=[seed_input(shape=[2 ** 62, 3])])), **same(500, "Shape does not match", PARSE_500)),
    Case("dims-wrap-binary", "shapes", "http", "binary shape [2^62+3, 3] with 36 bytes",
         binary((WRAP, 3), X.tobytes()), **same(200, '"shape":[3,1]', SHAPE_WRAP)),
    Case("three-dims", "shapes", "http", "shape [3, 3, 1]",
         post(body_of(inputs=[seed_input(shape=[3, 3, 1], data=X.reshape(3, 3, 1).tolist())])),
         **same(400, "Expected [-1,3], got [3,3,1]")),
    Case("one-dim", "shapes", "http", "shape [9]", post(body_of(inputs=[seed_input(shape=[9])])),
         **same(400, "Expected [-1,3], got [9]")),
    # Binary extension
    Case("header-length-larger", "binary", "http", "Inference-Header-Content-Length past the body",
         binary(X.shape, X.tobytes(), header_length=10_000), **same(400, "inference header size should be in range")),
    Case("header-length-negative", "binary", "http", "Inference-Header-Content-Length -5",
         binary(X.shape, X.tobytes(), header_length=-5), **same(400, "got: -5")),
    Case("header-length-nan", "binary", "http", "Inference-Header-Content-Length abc (read as 0: all raw)",
         binary(X.shape, X.tobytes(), header_length="abc"), **same(400, "input byte size mismatch")),
    Case("binary-size-larger", "binary", "http", "binary_data_size 40 for 36 bytes",
         binary(X.shape, X.tobytes(), data_size=40), **same(400, "expecting 4 additional bytes")),
    Case("binary-size-smaller", "binary", "http", "binary_data_size 32 for 36 bytes",
         binary(X.shape, X.tobytes(), data_size=32), **same(400, "unexpected additional input data")),
    Case("binary-size-negative", "binary", "http", "binary_data_size -4",
         binary(X.shape, X.tobytes(), data_size=-4), **same(500, "non-unsigned-integer", PARSE_500)),
    # Content type and method
    Case("content-type-text", "method", "http", "Content-Type: text/plain on a JSON body",
         http(raw_request("POST", INFER, SEED, {"Content-Type": "text/plain"})),
         **same(200, '"shape":[3,1]', "Triton 2.51 ignores Content-Type (tritonclient sends none for JSON, curl -d "
                "sends form-urlencoded), so a 415 would break clients; the body decides")),
    Case("get-infer", "method", "http", "GET on /infer", http(raw_request("GET", INFER)), **same(405, "Method Not Allowed")),
    Case("delete-infer", "method", "http", "DELETE on /infer", http(raw_request("DELETE", INFER)),
         **same(405, "Method Not Allowed")),
    # Request fields
    Case("missing-inputs", "fields", "http", "no 'inputs'", post(body_of(outputs=[{"name": "y"}])),
         **same(500, "non-existing object member 'inputs'", PARSE_500)),
    Case("empty-inputs", "fields", "http", "'inputs': []", post(body_of(inputs=[])), **same(400, "expected 1 inputs but got 0")),
    Case("inputs-not-a-list", "fields", "http", "'inputs': {}", post(body_of(inputs={"x": 1})),
         **same(500, "non-array as array", PARSE_500)),
    Case("duplicate-inputs", "fields", "http", "input 'x' twice", post(body_of(inputs=[seed_input(), seed_input()])),
         **same(400, "input 'x' already exists")),
    Case("unknown-output", "fields", "http", "output 'nope' requested",
         post(body_of(inputs=[seed_input()], outputs=[{"name": "nope"}])), **same(400, "unexpected inference output 'nope'")),
    Case("unregistered-shm", "fields", "http", "shared_memory_region 'never' (never registered)",
         post(body_of(inputs=[{k: v for k, v in seed_input().items() if k != "data"}
                              | {"parameters": {"shared_memory_region": "never", "shared_memory_byte_size": 36}}])),
         **same(404, "Unable to find shared memory region: 'never'")),
    Case("bad-datatype", "fields", "http", "datatype FP99", post(body_of(inputs=[seed_input(datatype="FP99")])),
         **same(400, "invalid datatype")),
    # Names in the URL
    Case("unicode-name-encoded", "url", "http", "model name 模型, percent-encoded",
         post(SEED, "/v2/models/%E6%A8%A1%E5%9E%8B/infer"), **same(404, "unknown model")),
    Case("unicode-name-raw", "url", "http", "model name модель as raw UTF-8 in the request line",
         post(SEED, "/v2/models/модель/infer"), Outcome(404, "unknown model"), Outcome(400, HAPROXY_400)),
    Case("dotdot-encoded", "url", "http", "model name %2e%2e", post(SEED, "/v2/models/%2e%2e/infer"),
         **same(404, "unknown model: '%2e%2e'")),
    Case("dotdot-traversal", "url", "http", "GET /v2/models/%2e%2e%2f%2e%2e%2fetc/config",
         http(raw_request("GET", "/v2/models/%2e%2e%2f%2e%2e%2fetc/config")), **same(404, "unknown model")),
    Case("nul-in-name", "url", "http", "model name lin%00ear", post(SEED, "/v2/models/lin%00ear/infer"),
         **same(404, "unknown model")),
    Case("name-64kib", "url", "http", "64 KiB model name", post(SEED, "/v2/models/" + "a" * 65536 + "/infer"),
         Outcome(None, upstream=BAD_FRAMING), Outcome(414, "URI longer than")),
    Case("version-minus-1", "url", "http", "version -1", post(SEED, f"/v2/models/{linear.MODEL}/versions/-1/infer"),
         **same(404, "Not Found")),
    Case("version-2^63", "url", "http", "version 2^63", post(SEED, f"/v2/models/{linear.MODEL}/versions/{2 ** 63}/infer"),
         **same(400, "version should be an integral value > 0")),
    # gRPC
    Case("grpc-64mib", "grpc", "grpc", "64 MiB message: a [5.6M, 3] tensor",
         grpc_call((ROWS_64MIB, 3), b"\0" * (ROWS_64MIB * 12)),
         Outcome("INVALID_ARGUMENT", "batch-size must be <= 64"),
         # HAProxy resets the stream once its buffer is full, before the client reads the answer
         Outcome(("CANCELLED", "RESOURCE_EXHAUSTED"))),
    Case("grpc-over-cap", "grpc", "grpc", "100 KiB message (over the gateway's cap)",
         grpc_call((ROWS_100KIB, 3), b"\0" * (ROWS_100KIB * 12)),
         Outcome("INVALID_ARGUMENT", "batch-size must be <= 64"), Outcome("RESOURCE_EXHAUSTED", TOO_LARGE.replace("body ", ""))),
    Case("grpc-raw-short", "grpc", "grpc", "raw_input_contents 35 bytes for [3, 3]",
         grpc_call(raw=X.tobytes()[:35]), **same("INVALID_ARGUMENT", "Expected 36, got 35")),
    Case("grpc-raw-long", "grpc", "grpc", "raw_input_contents 40 bytes for [3, 3]",
         grpc_call(raw=X.tobytes() + b"\0" * 4), **same("INVALID_ARGUMENT", "Expected 36, got 40")),
    Case("grpc-no-data", "grpc", "grpc", "an input with no data", grpc_call(raw=None),
         **same("INVALID_ARGUMENT", "unable to find data for input tensor 'x'")),
    Case("grpc-raw-and-contents", "grpc", "grpc", "raw_input_contents and contents both",
         grpc_call(contents=X.ravel().tolist()), **same("INVALID_ARGUMENT", "contents field must not be specified")),
    Case("grpc-bad-datatype", "grpc", "grpc", "datatype FP99", grpc_call(datatype="FP99"),
         **same("INVALID_ARGUMENT", "data-type is '<invalid>'")),
    Case("grpc-bytes-datatype", "grpc", "grpc", "datatype BYTES", grpc_call(datatype="BYTES"),
         **same("INVALID_ARGUMENT", "data-type is 'BYTES'")),
    Case("grpc-batch-over-max", "grpc", "grpc", "batch 65 > max_batch_size 64",
         grpc_call((65, 3), np.ones((65, 3), np.float32).tobytes()), **same("INVALID_ARGUMENT", "batch-size must be <= 64")),
    Case("grpc-nan", "grpc", "grpc", "NaN in raw_input_contents",
         grpc_call(raw=np.full((3, 3), np.nan, np.float32).tobytes()), **same("INVALID_ARGUMENT", NAN_OR_INF)),
    Case("grpc-inf-contents", "grpc", "grpc", "+Inf in fp32_contents", grpc_call(raw=None, contents=[float("inf")] * 9),
         **same("INVALID_ARGUMENT", NAN_OR_INF)),
    Case("grpc-negative-dim", "grpc", "grpc", "shape [-1, 3]", grpc_call((-1, 3)), **same("INVALID_ARGUMENT", "byte size mismatch")),
    Case("grpc-dims-wrap", "grpc", "grpc", "shape [2^62+3, 3] with 36 bytes", grpc_call((WRAP, 3)),
         **same("OK", "output shape [3, 1]", SHAPE_WRAP)),
    Case("grpc-three-dims", "grpc", "grpc", "shape [3, 3, 1]", grpc_call((3, 3, 1)), **same("INVALID_ARGUMENT", "got [3,3,1]")),
    Case("grpc-missing-inputs", "grpc", "grpc", "no inputs", grpc_call(raw=None, inputs=0),
         **same("INVALID_ARGUMENT", "expected 1 inputs but got 0")),
    Case("grpc-duplicate-inputs", "grpc", "grpc", "input 'x' twice", grpc_call(inputs=2), **same("INVALID_ARGUMENT", "already exists")),
    Case("grpc-unknown-output", "grpc", "grpc", "output 'nope' requested", grpc_call(outputs=("nope",)),
         **same("INVALID_ARGUMENT", "unexpected inference output 'nope'")),
    Case("grpc-unregistered-shm", "grpc", "grpc", "shared_memory_region 'never'",
         grpc_call(raw=None, parameters={"shared_memory_region": "never", "shared_memory_byte_size": 36}),
         **same("NOT_FOUND", "Unable to find shared memory region: 'never'")),
    Case("grpc-unicode-model", "grpc", "grpc", "model name модель", grpc_call(model="модель"), **same("NOT_FOUND", "unknown model")),
    Case("grpc-dotdot-model", "grpc", "grpc", "model name ../linear", grpc_call(model="../linear"), **same("NOT_FOUND", "unknown model")),
    # Triton's NOT_FOUND echoes the name: its 64 KiB grpc-message is over the client's 16 KiB metadata limit
    Case("grpc-model-64kib", "grpc", "grpc", "64 KiB model name", grpc_call(model="a" * 65536),
         Outcome("RESOURCE_EXHAUSTED", "metadata size exceeds"), Outcome("RESOURCE_EXHAUSTED", TOO_LARGE.replace("body ", ""))),
    Case("grpc-version-minus-1", "grpc", "grpc", "version -1", grpc_call(version="-1"),
         **same("INVALID_ARGUMENT", "version should be an integral value > 0")),
    Case("grpc-version-2^63", "grpc", "grpc", "version 2^63", grpc_call(version=str(2 ** 63)),
         **same("INVALID_ARGUMENT", "version should be an integral value > 0")),
    # Connections
    Case("slowloris", "connections", "http", "a header line a second, never finished", slowloris,
         Outcome("open", upstream="Triton 2.51 has no header timeout: a slow client holds its connection "
                 "open for as long as it likes (the gateway cuts it after GATEWAY_TIMEOUT_REQUEST)"),
         Outcome(408, "cut after")),
    Case("idle-1000-http", "connections", "http", f"{IDLE_CONNECTIONS} idle connections to the HTTP port, then the seed",
         idle_connections("http"), **same(200, "seed answered correctly")),
    Case("idle-1000-grpc", "connections", "grpc", f"{IDLE_CONNECTIONS} idle connections to the gRPC port, then the seed",
         idle_connections("grpc"), **same("OK", "seed answered correctly")),
]
BY_ID = {case.id: case for case in CASES}
assert len(BY_ID) == len(CASES), "duplicate case ids"


# ---- running a case ------------------------------------------------------------------------------

def params(route: str, crashes: bool = False) -> list:
    """pytest params for one route: strict xfail where the outcome documents an upstream deviation."""
    out = []
    for case in CASES:
        outcome = case.outcome(route)
        if outcome.crash != crashes:
            continue
        marks = [pytest.mark.xfail(strict=True, raises=UpstreamDeviation, reason=outcome.upstream)] if outcome.upstream else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


def assert_serving(target: Target) -> None:
    """READY, the model READY, and the seed request answered correctly over HTTP and gRPC."""
    for path in ("/v2/health/ready", f"/v2/models/{linear.MODEL}/versions/{linear.VERSION}/ready"):
        status = hostile.status_of(hostile.send_raw(target.host, target.http_port, raw_request("GET", path), timeout=10))
        assert status == 200, f"{target.http_url}{path} answered {status}, not 200"
    for where, y in ((f"HTTP {target.http_url}", smoke.infer_http(target.http_url, linear.SEED_X, binary=False)),
                     (f"gRPC {target.grpc_url}", smoke.infer_grpc(target.grpc_url, linear.SEED_X))):
        problem = linear.check_output(linear.SEED_X, y)
        assert problem is None, f"{where}: seed request after the case: {problem}"


def run(case: Case, route: str, target: Target, survived: Callable[[], None]) -> None:
    """Send the case, check the server survived (survived(): READY, seed answered, no restart),
    then that the answer is the table's."""
    outcome = case.outcome(route)
    status, text = case.send(target)
    survived()
    wanted = outcome.status if isinstance(outcome.status, tuple) else (outcome.status,)
    assert status in wanted, f"{case.id} ({route}): got {status!r}, the table says {outcome.status!r}: {text[:300]!r}"
    assert outcome.fragment in text, f"{case.id} ({route}): {outcome.fragment!r} not in the answer {text[:300]!r}"
    if outcome.upstream:
        raise UpstreamDeviation(f"{case.id} ({route}): {status!r}, not a clear 4xx: {outcome.upstream}")


def markdown_table() -> str:
    def show(outcome: Outcome) -> str:
        status = "/".join(map(str, outcome.status)) if isinstance(outcome.status, tuple) else outcome.status
        status = {None: "no answer", "open": "held open"}.get(status, status)
        return f"{status} (xfail{', crash' if outcome.crash else ''})" if outcome.upstream else str(status)

    rows = ["| case | transport | what is sent | direct (Triton 2.51) | through the gateway | notes |",
            "|---|---|---|---|---|---|"]
    notes: dict[str, int] = {}
    for case in CASES:
        refs = []
        for outcome in (case.direct, case.gateway):
            if outcome.upstream:
                refs.append(notes.setdefault(outcome.upstream, len(notes) + 1))
        note = ", ".join(f"[{n}]" for n in dict.fromkeys(refs))
        rows.append(f"| {case.id} | {case.transport} | {case.what.replace('|', '/')} | {show(case.direct)} | "
                    f"{show(case.gateway)} | {note} |")
    rows.append("")
    rows += [f"[{n}] {text}" for text, n in notes.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
