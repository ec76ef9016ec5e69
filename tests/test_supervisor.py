"""The image's liveness supervisor (images/triton-supervisor.py), without an engine: its check against
a stand-in HTTP server, and `run` with a stand-in child (tests/docker/test_healing.py drills the real
image)."""
from __future__ import annotations

import http.server
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tritonops.models import descriptor as descriptor_file
from tritonops import settings
from tritonops.stack.images import PROJECT_FILES

SCRIPT = PROJECT_FILES["triton-supervisor.py"]
spec = importlib.util.spec_from_file_location("triton_supervisor", SCRIPT)
supervisor = importlib.util.module_from_spec(spec)
spec.loader.exec_module(supervisor)

# A model no project file mentions: the supervisor reads what the repository's descriptors say.
MODEL = "scorer"
SAMPLE = {"inputs": {"ids": {"datatype": "INT32", "shape": [1, 2], "data": [3, 4]}},
          "outputs": {"score": {"datatype": "FP32", "shape": [1, 1], "data": [5.99], "atol": 0.001}}}
METADATA = {"name": MODEL, "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1, 1]}]}
HANG_S = 10  # the fake's "hang": far past the 1 s check timeout, so a missing timeout cannot pass
GOOD = {"model_name": MODEL, "outputs": [{"name": "score", "datatype": "FP32", "shape": [1, 1], "data": [5.9903]}]}


def write_repository(root: Path) -> Path:
    """scorer (checked), an ensemble step and a model with health_check false (neither probed alone)."""
    descriptors = {MODEL: {"samples": [SAMPLE]}, "step": {"ensemble_step_of": MODEL},
                   "quiet": {"samples": [SAMPLE], "health_check": False}}
    for name, descriptor in descriptors.items():
        (root / name).mkdir(parents=True)
        (root / name / descriptor_file.FILENAME).write_text(json.dumps(descriptor))
    return root


class FakeTriton(http.server.ThreadingHTTPServer):
    """Answers /v2/models/scorer(/infer) as `mode` says: ok, 500, hang, nan, shape, wrong."""
    daemon_threads = True

    def __init__(self, repository: Path):
        self.mode, self.repository, self.posts = "ok", repository, []
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == f"/v2/models/{MODEL}":
            return self.reply(200, METADATA)
        self.reply(200, {}) if self.path == "/v2/health/ready" else self.reply(404, {"error": "no"})

    def do_POST(self):
        self.server.posts.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
        mode = self.server.mode
        if mode == "hang":
            time.sleep(HANG_S)
        if mode == "500":
            return self.reply(500, {"error": f"Stub process '{MODEL}_0_0' is not healthy."})
        answer = json.loads(json.dumps(GOOD))
        if mode == "nan":
            answer["outputs"][0]["data"] = [float("nan")]
        if mode == "shape":
            answer["outputs"][0]["shape"], answer["outputs"][0]["data"] = [1, 2], [1.0, 2.0]
        if mode == "wrong":
            answer["outputs"][0]["data"] = [7.5]
        self.reply(200, answer)


@pytest.fixture
def fake(tmp_path):
    server = FakeTriton(write_repository(tmp_path / "models"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def environ(server, **knobs) -> dict[str, str]:
    return {**os.environ, "TRITON_HTTP_PORT": str(server.server_address[1]), "MODEL_REPOSITORY": str(server.repository),
            "TRITON_LIVENESS_INTERVAL_SECS": "0.2", "TRITON_LIVENESS_TIMEOUT_SECS": "1", "TRITON_LIVENESS_FAILURES": "3",
            "PYTHONFAULTHANDLER": "1", **knobs}  # a hung supervisor's stack on SIGABRT


@pytest.mark.parametrize("mode, why", [
    ("ok", None), ("500", f"scorer: HTTP 500 {{\"error\": \"Stub process '{MODEL}_0_0' is not healthy.\"}}"),
    ("hang", "scorer: no answer within 1 s"), ("nan", "not finite"), ("shape", "has shape [1, 2], the model says [-1, 1]"),
    ("wrong", "scorer: output 'score'[0] = 7.5, the sample expects 5.99 (rtol 1e-05, atol 0.001)"),
])
def test_check_accepts_only_a_correct_answer(fake, mode, why):
    fake.mode = mode
    cfg = supervisor.Settings(environ(fake))
    started = time.monotonic()
    got = supervisor.check(cfg)
    # the 1 s timeout bounds the whole check: well under the fake's hang, with room for a busy box
    assert time.monotonic() - started < HANG_S / 2
    assert (got is None) if why is None else (why in got), got


def test_the_probes_are_the_repositorys_checked_models(fake):
    """One sample of each health-checked model, sent as its descriptor writes it; ensemble steps and
    models with health_check false are not probed alone."""
    cfg = supervisor.Settings(environ(fake))
    assert [p.model for p in cfg.probes] == [MODEL] and MODEL in cfg.describe()
    assert supervisor.check(cfg) is None
    assert fake.posts == [(f"/v2/models/{MODEL}/infer",
                           {"inputs": [{"name": "ids", "datatype": "INT32", "shape": [1, 2], "data": [3, 4]}]})]
    shipped = supervisor.probes(str(settings.MODEL_REPOSITORY))
    assert [p.model for p in shipped] == ["embed", "linear"]


def test_a_repository_without_samples_is_checked_by_readiness(fake, tmp_path):
    cfg = supervisor.Settings({**environ(fake), "MODEL_REPOSITORY": str(tmp_path)})
    assert cfg.probes == [] and "/v2/health/ready" in cfg.describe()
    assert supervisor.check(cfg) is None and fake.posts == []


def test_the_supervisor_reads_descriptors_as_tritonops_writes_them():
    """Its stdlib twins of tritonops.models.descriptor's name and default tolerances."""
    assert supervisor.DESCRIPTOR == descriptor_file.FILENAME
    assert (supervisor.DEFAULT_RTOL, supervisor.DEFAULT_ATOL) == (descriptor_file.DEFAULT_RTOL, descriptor_file.DEFAULT_ATOL)


def test_the_shipped_models_pass_the_check_against_the_real_triton(triton):
    """Every health-checked model of the shipped repository (linear and the embed ensemble) answers its
    descriptor's sample within the liveness timeout, on the wheel's Triton."""
    cfg = supervisor.Settings({"TRITON_HTTP_PORT": str(triton.ports["http"]), "MODEL_REPOSITORY": str(settings.MODEL_REPOSITORY),
                               "TRITON_LIVENESS_TIMEOUT_SECS": settings.get("TRITON_LIVENESS_TIMEOUT_SECS")})
    assert [p.model for p in cfg.probes] == ["embed", "linear"]
    assert supervisor.check(cfg) is None


def test_check_reports_a_refused_connection(fake):
    cfg = supervisor.Settings({**environ(fake), "TRITON_HTTP_PORT": "1"})
    assert "refused" in supervisor.check(cfg).lower()


def supervise(server, *child: str, **knobs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), "run", *child], env=environ(server, **knobs),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def until(proc: subprocess.Popen, *marks: str) -> str:
    """The supervisor's and child's output until each mark has been seen, in whichever order a busy box
    prints them. Read, not slept for: a fixed sleep let a slow start on a busy box see the 500s first
    (which do not count), or signal a child that had not yet set its handler."""
    seen = ""
    while not all(mark in seen for mark in marks):
        line = proc.stdout.readline()
        assert line, f"the supervisor ended before {marks}: {seen}"
        seen += line
    return seen


def test_run_exits_after_failures_in_a_row_and_stops_the_child(fake):
    child_code = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
                  "print('up', flush=True); time.sleep(60)")
    proc = supervise(fake, sys.executable, "-c", child_code)
    out = until(proc, "first correct answer", "up\n")
    fake.mode = "500"
    started = time.monotonic()
    out += proc.communicate(timeout=20)[0]
    took = time.monotonic() - started
    assert proc.returncode == supervisor.EXIT_NOT_ANSWERING, out
    assert "first correct answer" in out and "liveness check 1/3 failed: scorer: HTTP 500" in out, out
    assert "NOT ANSWERING: 3 liveness checks in a row failed" in out and "is not healthy" in out, out
    assert "tritonserver stopped (exit code 0)" in out, out  # SIGTERM, and the child exited on it
    assert took < 3 * (0.2 + 1) + 1, took


def test_failures_before_the_first_answer_do_not_count(fake):
    fake.mode = "500"  # a model still loading
    proc = supervise(fake, "sleep", "2")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "NOT ANSWERING" not in out, out
    assert "exited by itself (exit code 0" in out, out


def test_run_passes_a_crash_on_with_its_code(fake):
    proc = supervise(fake, "sh", "-c", "kill -ABRT $$")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGABRT, out
    assert "exited by itself (killed by SIGABRT" in out and "restart policy" in out, out


def test_sigterm_is_forwarded_and_the_childs_exit_code_kept(fake):
    child_code = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); "
                  "print('up', flush=True); time.sleep(60)")
    proc = supervise(fake, sys.executable, "-c", child_code)
    until(proc, f"{supervisor.PREFIX} started", "up\n")  # "started" follows the supervisor's signal setup
    proc.send_signal(signal.SIGTERM)
    try:  # it exits at once; 30 s leaves a stalled box room
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        state = psutil.Process(proc.pid).status()
        proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: where it hangs
        time.sleep(1)
        proc.kill()
        pytest.fail(f"the supervisor ({state}) still ran 30 s after SIGTERM; it wrote:\n{proc.communicate()[0]}")
    assert proc.returncode == 7, out
    assert "stopped on SIGTERM (exit code 7)" in out, out


def test_failures_zero_turns_restarts_off(fake):
    proc = supervise(fake, "sleep", "3", TRITON_LIVENESS_FAILURES="0")
    out = until(proc, "first correct answer")
    fake.mode = "500"
    out += proc.communicate(timeout=20)[0]
    assert proc.returncode == 0 and "NOT ANSWERING" not in out and "restarts off" in out, out


def test_the_command_line_is_never_logged(fake):
    """It carries the admin key (--http-restricted-api=...:admin-key=<key>)."""
    proc = supervise(fake, "sh", "-c", "exit 0", "--http-restricted-api=secret-key-123")
    out, _ = proc.communicate(timeout=20)
    assert "secret-key-123" not in out, out


def test_check_cli_exit_status(fake):
    for mode, code in (("ok", 0), ("500", 1)):
        fake.mode = mode
        done = subprocess.run([sys.executable, str(SCRIPT), "check"], env=environ(fake), capture_output=True,
                              text=True, timeout=20)
        assert done.returncode == code, done.stdout + done.stderr
