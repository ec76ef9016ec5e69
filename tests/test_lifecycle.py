"""`tritonops serve` (what `make serve` runs): READY banner, clean stop, clear start-up errors."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from repos import linear_only

from tritonops import settings
from tritonops.serving.server import LocalServer, ServerError, free_port

CLI = [sys.executable, "-m", "tritonops.cli", "serve", "--host", "127.0.0.1"]


def ports() -> list[str]:
    return ["--http-port", str(free_port()), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]


def live_processes() -> dict[int, str]:
    """pid -> command line of every process that is not a zombie."""
    return {p.pid: " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["status", "cmdline"])
            if p.info["status"] != psutil.STATUS_ZOMBIE}


def process_tree(root: int) -> dict[int, str]:
    """pid -> command line of every live process below root."""
    live = live_processes()
    return {p.pid: live[p.pid] for p in psutil.Process(root).children(recursive=True) if p.pid in live}


def run_until_ready(extra: list[str]) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(CLI + extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=settings.ROOT)
    lines = []
    deadline = time.monotonic() + 90
    for line in proc.stdout:
        lines.append(line)
        if "Triton is READY" in line or time.monotonic() > deadline:
            break
    return proc, lines


# SIGTERM: the repo's whole model repository (linear and the embed pipeline: five stubs' worth of
# processes); Ctrl-C: linear alone, the same path at a third of the start-up time.
@pytest.mark.parametrize("signum, whole", [(signal.SIGTERM, True), (signal.SIGINT, False)], ids=["SIGTERM", "Ctrl-C"])
def test_serve_stops_cleanly_and_leaves_no_children(signum, whole, tmp_path):
    proc, lines = run_until_ready(ports() + ([] if whole else ["--repository", str(linear_only(tmp_path / "repo"))]))
    try:
        assert any("Triton is READY" in l for l in lines), "".join(lines[-20:])
        tree = process_tree(proc.pid)
        assert any("bin/tritonserver" in c for c in tree.values()), tree
        assert any("triton_python_backend_stub" in c for c in tree.values()), tree
        started = time.monotonic()
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "stopped." in out
        # Stop is prompt (Triton's own exit timeout is shortened); not a benchmark, a bound.
        assert time.monotonic() - started < 15
        left = {pid: cmd for pid, cmd in live_processes().items() if pid in tree}
        assert left == {}, f"processes left behind: {left}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(CLI + ["--http-port", str(port), "--grpc-port", str(free_port()),
                                       "--metrics-port", str(free_port())],
                                capture_output=True, text=True, timeout=60, cwd=settings.ROOT)
    assert result.returncode == 1
    assert f"HTTP port {port} on 127.0.0.1 is already in use" in result.stderr


def test_invalid_repository_is_refused_before_start(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(settings.MODEL_REPOSITORY / "linear", repo / "linear")
    cfg = repo / "linear" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('name: "linear"', 'name: "other"'))
    result = subprocess.run(CLI + ["--repository", str(repo)] + ports(), capture_output=True, text=True,
                            timeout=60, cwd=settings.ROOT)
    assert result.returncode == 1
    assert "invalid model repository" in result.stderr
    assert f"{cfg}: name: 'other' does not match the directory name 'linear'" in result.stderr


def test_model_load_failure_shows_tritons_reason(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(settings.MODEL_REPOSITORY / "linear", repo / "linear")
    model_py = repo / "linear" / "1" / "model.py"
    model_py.write_text(model_py.read_text().replace(
        "    def initialize(self, args):\n",
        "    def initialize(self, args):\n        raise RuntimeError('deliberate failure in initialize')\n"))
    server = LocalServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         host="127.0.0.1", log_path=tmp_path / "server.log")
    with pytest.raises(ServerError) as err:
        server.start()
    assert "exited with code" in str(err.value)
    assert "deliberate failure in initialize" in str(err.value)
    assert server.descendants() == []


def test_server_dies_with_the_process_that_started_it():
    """A test run or `tritonops serve` killed outright must not leave a server (and its stub) behind."""
    script = ("from tritonops.serving.server import LocalServer, free_port\n"
              "s = LocalServer(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),"
              " host='127.0.0.1', log_path='/dev/null').start()\n"
              "print(s.proc.pid, flush=True)\n"
              "import time; time.sleep(300)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=settings.ROOT)
    try:
        server_pid = int(parent.stdout.readline())
        tree = process_tree(parent.pid)
        assert server_pid in tree and any("triton_python_backend_stub" in c for c in tree.values()), tree
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and set(tree) & set(live_processes()):
        time.sleep(0.2)
    left = {pid: cmd for pid, cmd in live_processes().items() if pid in tree}
    assert left == {}, f"left behind after the parent died: {left}"
