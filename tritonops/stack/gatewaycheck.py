"""The gateway's health check, derived from the served repository's descriptors (docs/health.md).

One check per model whose tritonops.json has `health_check` true (the default) and samples, and that is
not an ensemble step (steps are reached, so checked, through their ensemble): the descriptor's first
sample as a KServe v2 JSON inference, compact, POSTed to /v2/models/<model>/infer and expected to answer
200. The images' supervisor picks the same models and sample (images/triton-supervisor.py `probes`).
HAProxy sends them in turn, each on its own connection (2.6 allows only one send/expect pair per
`http-check connect`); a server is DOWN when any of them fails. An empty list (a repository with no
health-checked model, or the fleet gateway in front of the GPU hosts' gateways) makes the template check
GET /v2/health/ready instead.

`python -m tritonops.stack.gateway checks --repository DIR` prints the list as JSON: the Ansible triton role
runs that on the controller, so a GPU host's gateway gets the list the compose renderer computes.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..models import descriptor

# A model name goes into the check's URI and comment unquoted: keep it to what needs no escaping.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class CheckError(ValueError):
    pass


def body(sample: descriptor.Sample) -> str:
    """The sample's inputs as a compact KServe v2 JSON body (flat data, as the supervisor sends it), safe
    inside HAProxy's single quotes: ASCII only, no line breaks (JSON escapes them), and the one character
    single quotes cannot hold, ', written as the equivalent JSON escape \\u0027."""
    request = {"inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "data": t.data}
                          for t in sample.inputs]}
    return json.dumps(request, separators=(",", ":"), ensure_ascii=True).replace("'", "\\u0027")


def checks(repository: Path, max_body_bytes: int) -> list[dict[str, str]]:
    """[{"model", "uri", "body"}] for the gateway's template, models in name order. CheckError names the
    model and file when a descriptor cannot be read or its sample cannot be sent (a body larger than the
    gateway's cap would neither fit HAProxy's check buffer nor pass the gateway as a client's request)."""
    repository = Path(repository)
    if not repository.is_dir():
        raise CheckError(f"{repository}: no such model repository")
    found = []
    for path in sorted(p for p in repository.iterdir() if (p / descriptor.FILENAME).is_file()):
        try:
            desc = descriptor.load(path)
        except descriptor.DescriptorError as exc:
            raise CheckError(f"the gateway's check cannot be derived: {exc}") from None
        if desc.ensemble_step_of or not desc.health_check or not desc.samples:
            continue
        where = f"model {desc.model} ({desc.path})"
        if not SAFE_NAME.fullmatch(desc.model):
            raise CheckError(f"{where}: the gateway's check needs a model name of letters, digits, '_', '.' and '-' "
                             f"only: rename the folder or set \"health_check\": false")
        text = body(desc.samples[0])
        if len(text) > max_body_bytes:
            raise CheckError(f"{where}: samples[0] is {len(text)} bytes as the gateway's check request, over "
                             f"GATEWAY_MAX_BODY_BYTES={max_body_bytes}: put a smaller sample first, or set "
                             f"\"health_check\": false")
        found.append({"model": desc.model, "uri": f"/v2/models/{desc.model}/infer", "body": text})
    return found
