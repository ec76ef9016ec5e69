"""The restricted-management-API drill, shared by the wheel server (tests/test_restricted_api.py) and
the compose stack (tests/docker/test_restricted_stack.py): every restricted endpoint is refused
without the admin key, with Triton 2.51's exact answer, and works with it; inference, health,
metadata and config need no key.

Imported as `restricted` (tests/ is on sys.path, like hostile and ci_policy).
"""
from __future__ import annotations

import json
from pathlib import Path

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritonops.models import linear
from tritonops.serving import adminkey, smoke

M = linear.MODEL
def http_cases(model: str, infer_body: dict) -> tuple[list, list]:
    """(restricted, open) HTTP cases for a served model: (method, path, JSON body or None, status with the
    key). Load/unload: MODEL_CONTROL_MODE none forbids them (503), but only once the key got the request
    past the restriction."""
    restricted = [
        ("POST", "/v2/repository/index", {}, 200),
        ("POST", f"/v2/repository/models/{model}/load", {}, 503),
        ("POST", f"/v2/repository/models/{model}/unload", {}, 503),
        ("GET", "/v2/logging", None, 200),
        ("POST", "/v2/logging", {}, 200),
        ("GET", "/v2/trace/setting", None, 200),
        ("POST", "/v2/trace/setting", {}, 200),
        ("GET", f"/v2/models/{model}/trace/setting", None, 200),
        ("GET", "/v2/systemsharedmemory/status", None, 200),
        ("POST", "/v2/systemsharedmemory/unregister", {}, 200),
        ("GET", "/v2/cudasharedmemory/status", None, 200),
        ("GET", "/v2/models/stats", None, 200),
        ("GET", f"/v2/models/{model}/stats", None, 200),
    ]
    open_ = [
        ("GET", "/v2/health/live", None, 200),
        ("GET", "/v2/health/ready", None, 200),
        ("GET", f"/v2/models/{model}/ready", None, 200),
        ("GET", "/v2", None, 200),
        ("GET", f"/v2/models/{model}", None, 200),
        ("GET", f"/v2/models/{model}/config", None, 200),
        ("POST", f"/v2/models/{model}/infer", infer_body, 200),
    ]
    return restricted, open_


def first_sample(repository: Path) -> tuple[str, dict]:
    """(model, KServe v2 JSON body of its first sample): the first model of repository with samples."""
    desc = smoke.descriptors_of(repository)[0]
    return desc.model, {"inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "data": t.data}
                                   for t in desc.samples[0].inputs]}


# Triton 2.51's refusals, word for word.
HTTP_REFUSAL = (403, f"This API is restricted, expecting header '{adminkey.header()}'")
GRPC_REFUSAL = ("StatusCode.UNAVAILABLE",
                f"This protocol is restricted, expecting header '{adminkey.GRPC_PREFIX}{adminkey.header()}'")
# tritonclient.grpc calls (method, args, OK with the key?) for every restricted protocol group.
RESTRICTED_GRPC = [
    ("get_model_repository_index", (), True),
    ("load_model", (M,), False),
    ("unload_model", (M,), False),
    ("get_log_settings", (), True),
    ("update_log_settings", ({},), True),
    ("get_trace_settings", (), True),
    ("update_trace_settings", (), True),
    ("get_system_shared_memory_status", (), True),
    ("unregister_system_shared_memory", (), True),
    ("get_inference_statistics", (M,), True),
    ("get_inference_statistics", (), True),
]
OPEN_GRPC = [("is_server_live", ()), ("is_server_ready", ()), ("is_model_ready", (M,)),
             ("get_server_metadata", ()), ("get_model_metadata", (M,)), ("get_model_config", (M,))]

# Run inside the Triton container (python3 is there, curl is not): requests as JSON on stdin,
# [status, body] per request on stdout.
SEND_SCRIPT = """
import json, sys, urllib.request, urllib.error
base, out = sys.argv[1], []
for method, path, body, headers in json.load(sys.stdin):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            out.append([r.status, r.read().decode(errors="replace")])
    except urllib.error.HTTPError as e:
        out.append([e.code, e.read().decode(errors="replace")])
print(json.dumps(out))
"""


def error_of(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return parsed.get("error", body) if isinstance(parsed, dict) else body


def check_http(send, key: str, repository: Path | None = None) -> list[str]:
    """send(list of (method, path, body, headers)) -> [(status, body)]; problems, one line each. The model
    the cases name: repository's first model with samples (default: linear and its seed request)."""
    restricted, open_ = http_cases(*(first_sample(repository) if repository else (M, linear.seed_request_json())))
    with_key = adminkey.headers(key)
    wrong_key = adminkey.headers("not-" + key)
    cases = ([(m, p, b, {}, HTTP_REFUSAL[0], "no key") for m, p, b, _ in restricted]
             + [(m, p, b, wrong_key, HTTP_REFUSAL[0], "wrong key") for m, p, b, _ in restricted]
             + [(m, p, b, with_key, ok, "key") for m, p, b, ok in restricted]
             + [(m, p, b, {}, ok, "no key (open)") for m, p, b, ok in open_])
    answers = send([(m, p, b, h) for m, p, b, h, _, _ in cases])
    problems = []
    for (method, path, _, _, want, how), (status, body) in zip(cases, answers, strict=True):
        if status != want:
            problems.append(f"{method} {path} with {how}: {status} {error_of(body)[:120]!r}, expected {want}")
        elif status == HTTP_REFUSAL[0] and error_of(body) != HTTP_REFUSAL[1]:
            problems.append(f"{method} {path} with {how}: refusal {error_of(body)!r}, expected {HTTP_REFUSAL[1]!r}")
    return problems


def _grpc_call(client, method: str, args, headers) -> str | None:
    """None when the call succeeded, else 'StatusCode.X: message'."""
    try:
        getattr(client, method)(*args, headers=headers)
    except InferenceServerException as exc:
        return f"{exc.status()}: {exc.message()}"
    return None


def check_grpc(url: str, key: str) -> list[str]:
    """The gRPC drill against url (host:port of Triton itself, no gateway); problems, one line each."""
    refusal = f"{GRPC_REFUSAL[0]}: {GRPC_REFUSAL[1]}"
    problems = []
    with grpcclient.InferenceServerClient(url) as client:
        for method, args, ok in RESTRICTED_GRPC:
            for how, headers in (("no key", {}), ("wrong key", adminkey.headers("not-" + key, "grpc")),
                                 ("the HTTP header name", adminkey.headers(key, "http"))):
                got = _grpc_call(client, method, args, headers)
                if got != refusal:
                    problems.append(f"gRPC {method}{args} with {how}: {got!r}, expected {refusal!r}")
            got = _grpc_call(client, method, args, adminkey.headers(key, "grpc"))
            if (got is None) != ok or (got and GRPC_REFUSAL[1] in got):
                problems.append(f"gRPC {method}{args} with the key: {got!r}, expected {'OK' if ok else 'a refusal by the mode'}")
        for method, args in OPEN_GRPC:
            if (got := _grpc_call(client, method, args, {})) is not None:
                problems.append(f"gRPC {method}{args} without a key: {got!r}, expected OK")
        inputs, outputs = linear.grpc_inputs(linear.SEED_X)
        y = client.infer(M, inputs, outputs=outputs).as_numpy(linear.OUTPUT)  # no key
        if (why := linear.check_output(linear.SEED_X, y)) is not None:
            problems.append(f"gRPC infer without a key: {why}")
    return problems
