"""The gateway's health check comes from the served repository's descriptors (tritonops.stack.gatewaycheck):
which models, what body, what is refused, and what this machine's HAProxy 2.6 really sends. The test
against real tritonservers is test_model_checks.py."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from repos import BYOM_MODEL, HAND_WRITTEN, build_byom_repository

from tritonops import settings
from tritonops.models import descriptor
from tritonops.stack import gateway, gatewaycheck
from tritonops.serving.server import free_port

V = settings.versions()
CAP = int(V["GATEWAY_MAX_BODY_BYTES"])
# Everything HAProxy's config syntax could read as syntax (quotes, backslash, comment, environment
# variable, log-format %) and what JSON must escape (line break, tab, non-ASCII).
AWKWARD = ["it's", '"q"', "back\\slash", "#x", "${HOME}", "%d %[src]", "é€", "line\nbreak", "tab\there"]


def awkward_repository(root):
    sample = {"inputs": {"numbers": {"datatype": "INT32", "shape": [1, 2], "data": [1, 2]},
                         "words": {"datatype": "BYTES", "shape": [1, len(AWKWARD)], "data": AWKWARD}},
              "outputs": {"total": {"datatype": "INT64", "shape": [1, 1], "data": [3]}}}
    return build_byom_repository(root, {"samples": [sample]})


def test_the_shipped_repository_checks_linear_and_embed_not_the_ensemble_steps():
    checks = gatewaycheck.checks(settings.MODEL_REPOSITORY, CAP)
    assert [c["model"] for c in checks] == ["embed", "linear"]  # tokenizer, encoder: through embed
    for c in checks:
        first = descriptor.load(settings.MODEL_REPOSITORY / c["model"]).samples[0]
        assert c["uri"] == f"/v2/models/{c['model']}/infer"
        sent = json.loads(c["body"])["inputs"]
        assert [(t["name"], t["datatype"], tuple(t["shape"]), t["data"]) for t in sent] == \
            [(t.name, t.datatype, t.shape, t.data) for t in first.inputs]
        assert c["body"] == json.dumps(json.loads(c["body"]), separators=(",", ":"))  # compact


def test_health_check_false_and_missing_descriptors_are_left_out(tmp_path):
    repo = build_byom_repository(tmp_path, {**HAND_WRITTEN, "health_check": False})
    (repo / "no_descriptor").mkdir()
    assert gatewaycheck.checks(repo, CAP) == []


def test_without_a_checked_model_the_gateway_checks_readiness(haproxy, tmp_path):
    repo = build_byom_repository(tmp_path, {**HAND_WRITTEN, "health_check": False})
    path = tmp_path / "haproxy.cfg"
    path.write_text(gateway.render([gateway.Backend("t", "127.0.0.1", 1, 2, 3)], admin_socket="/s", repository=repo))
    gateway.check_config(path)
    text = path.read_text()
    assert text.count("http-check send meth GET uri /v2/health/ready ver HTTP/1.1 hdr Host gateway\n") == 2  # HTTP, gRPC
    assert "http-check send meth POST" not in text and "http-check connect" not in text


def test_awkward_strings_are_carried_in_single_quotes_and_valid_for_haproxy(haproxy, tmp_path):
    repo = awkward_repository(tmp_path)
    (check,) = gatewaycheck.checks(repo, CAP)
    assert "'" not in check["body"] and "\n" not in check["body"] and check["body"].isascii()
    assert json.loads(check["body"])["inputs"][1]["data"] == AWKWARD
    path = tmp_path / "haproxy.cfg"
    path.write_text(gateway.render([gateway.Backend("t", "127.0.0.1", 1, 2, 3)], admin_socket="/s", repository=repo))
    gateway.check_config(path)
    assert path.read_text().count(f"body '{check['body']}'\n") == 2


def test_haproxy_sends_every_model_its_body_byte_for_byte(haproxy, tmp_path):
    """Real HAProxy 2.6 in front of a recording HTTP server: one check is every model's request in
    turn (a connection each), bodies exactly as derived, awkward strings included."""
    repo = awkward_repository(tmp_path)
    second = repo / "zz_second"
    shutil.copytree(repo / BYOM_MODEL, second)
    (second / "config.pbtxt").write_text((second / "config.pbtxt").read_text().replace(BYOM_MODEL, "zz_second"))
    checks = gatewaycheck.checks(repo, CAP)
    assert [c["model"] for c in checks] == [BYOM_MODEL, "zz_second"]
    seen = []

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            seen.append((self.path, self.client_address[1], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    ports = {k: free_port() for k in ("http", "grpc", "metrics", "stats")}
    try:
        with gateway.LocalGateway([gateway.Backend("r", "127.0.0.1", port, port, port)], tmp_path / "gw", ports,
                                  values=V, repository=repo):
            pass  # start() returned: the check passed (every expect met)
    finally:
        server.shutdown()
    by_path = {}
    for path, client_port, body in seen:
        by_path.setdefault(path, []).append((client_port, body))
    for c in checks:
        assert {body for _, body in by_path[c["uri"]]} == {c["body"].encode()}, c["model"]
    first_ports = {p for p, _ in by_path[checks[0]["uri"]]}
    assert first_ports.isdisjoint(p for p, _ in by_path[checks[1]["uri"]])  # own connection each


def test_a_sample_over_the_body_cap_is_refused_naming_model_and_file(tmp_path):
    repo = build_byom_repository(tmp_path)
    with pytest.raises(gateway.GatewayError) as refused:
        gateway.render([gateway.Backend("t", "h", 1, 2, 3)], admin_socket="/s", repository=repo,
                       values={**V, "GATEWAY_MAX_BODY_BYTES": "100"})
    said = str(refused.value)
    assert f"model {BYOM_MODEL} ({repo / BYOM_MODEL / descriptor.FILENAME})" in said
    assert "over GATEWAY_MAX_BODY_BYTES=100" in said and "health_check" in said


def test_a_broken_descriptor_or_an_unsafe_name_is_named(tmp_path):
    repo = build_byom_repository(tmp_path)
    (repo / BYOM_MODEL / descriptor.FILENAME).write_text('{"samples": [}')
    with pytest.raises(gatewaycheck.CheckError, match=rf"{BYOM_MODEL}/tritonops.json: line 1"):
        gatewaycheck.checks(repo, CAP)
    (repo / BYOM_MODEL / descriptor.FILENAME).write_text(json.dumps(HAND_WRITTEN))
    (repo / BYOM_MODEL).rename(repo / "tally kit")
    with pytest.raises(gatewaycheck.CheckError, match=r"model tally kit \(.*\): the gateway's check needs a model name"):
        gatewaycheck.checks(repo, CAP)


def test_the_cli_prints_the_list_the_renderer_uses(tmp_path):
    """What the Ansible triton role runs on the controller (tasks/seed.yml: the checks of the release the host serves)."""
    repo = build_byom_repository(tmp_path)
    done = subprocess.run([sys.executable, "-m", "tritonops.cli", "gateway", "checks", "--repository", str(repo)],
                          cwd=settings.ROOT, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(settings.ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == gateway.variables([], admin_socket="", repository=repo)["gateway_checks"]
    missing = subprocess.run([sys.executable, "-m", "tritonops.cli", "gateway", "checks", "--repository", str(tmp_path / "nope")],
                             cwd=settings.ROOT, capture_output=True, text=True, timeout=60,
                             env={"PYTHONPATH": str(settings.ROOT), "PATH": "/usr/bin:/bin"})
    assert missing.returncode == 1 and f"{tmp_path / 'nope'}: no such model repository" in missing.stderr
