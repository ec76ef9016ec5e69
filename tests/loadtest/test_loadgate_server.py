"""The Locust-native gate against real tritonservers, as a plain `locust ... --slo` and as `make
loadtest`: it passes on the shipped model and fails, with the reason, on a server that answers wrongly,
on one that is too slow and on thresholds no server meets; open loop too. The embed gate (MODEL=embed,
loadtests/embed.py) passes on the shipped pipeline and fails on an encoder that answers wrongly. Short
runs; no timing is asserted except where a threshold is impossible or a server slow on purpose.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from tritonops import settings
from tritonops.models import embedding, linear
from tritonops.serving import loadgate

SHIPPED = settings.MODEL_REPOSITORY / linear.MODEL


def gate(server, report_dir: Path, thresholds: Path = loadgate.THRESHOLDS, target: str = "local-cpu",
         users: int = 4, duration: str = "4s", *extra: str, rate: str = "", model: str = "linear") -> tuple[int, str]:
    """Run the gate as `make loadtest` does (the Make verb, so its variables are tested too)."""
    args = (f"--thresholds {thresholds} --report-dir {report_dir} --metrics-url {server.metrics_url} "
            + " ".join(extra))
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "loadtest", f"URL={server.http_url}", f"MODEL={model}",
         f"USERS={users}", f"DURATION={duration}", f"TARGET={target}", f"RATE={rate}", f"LOADTEST_ARGS={args}"],
        cwd=settings.ROOT, capture_output=True, text=True, timeout=180)
    return done.returncode, done.stdout + done.stderr


def locust(server, *args: str, users: int = 2, duration: str = "3s") -> tuple[int, str]:
    """A plain headless `locust` run of the Locust file, as its README shows it."""
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(loadgate.LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users),
         "-t", duration, "-H", f"http://{server.http_url}", "--metrics-url", server.metrics_url, "--only-summary", *args],
        cwd=settings.ROOT, capture_output=True, text=True, timeout=180)
    return done.returncode, done.stdout + done.stderr


def figures(summary: Path) -> dict[str, str]:
    """First two cells of each row of summary.md's tables."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in summary.read_text().splitlines()
            if line.startswith("|")]
    return {r[0]: r[1] for r in rows if len(r) >= 2}


def test_gate_passes_on_the_shipped_model_with_mixed_batches(shipped_server, lenient_thresholds, tmp_path):
    code, out = gate(shipped_server, tmp_path, lenient_thresholds, "lenient")
    assert code == 0, out
    assert "\nPASS\n" in out
    for name in ("locust_stats.csv", "locust_failures.csv", "locust.html", "locust.log", "locust.figures.json",
                 "summary.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    got = figures(tmp_path / "summary.md")
    assert got["failed requests (client)"] == "0"
    requests = int(got["server: successful requests"])
    assert requests >= int(got["requests sent"]) > 0
    assert got["server: failed requests"] == "0"
    # mixed batch sizes 1..max_batch_size: many more rows than requests
    assert int(got["server: inferences (rows)"]) > 4 * requests
    assert float(got["server: avg batch formed (inferences/executions)"]) >= 1


def test_plain_locust_gates_its_run(shipped_server, lenient_thresholds, tmp_path):
    """`locust -f loadtests/linear.py ... --slo TABLE` alone: exit 0 and the verdict table on a healthy server;
    exit 1 naming the check when the table asks for a throughput no server reaches."""
    code, out = locust(shipped_server, "--slo", "lenient", "--slo-file", str(lenient_thresholds))
    assert code == 0, out
    assert "| throughput " in out and "| p95 latency " in out and "\nPASS\n" in out

    impossible = tmp_path / "impossible.toml"
    impossible.write_text("[t]\np95_ms = 60000\nmin_rps = 1e9\n")
    code, out = locust(shipped_server, "--slo", "t", "--slo-file", str(impossible), "--slo-report", str(tmp_path / "v.md"))
    assert code == 1, out
    assert "FAIL:\n  - throughput " in out and "req/s is below the 1e+09 req/s threshold" in out
    assert figures(tmp_path / "v.md")["failed requests (client)"] == "0"  # failed on speed only


def test_open_loop_gates_p95_at_a_target_rate(shipped_server, lenient_thresholds, tmp_path):
    """--target-rps: every user paced (constant_throughput) to target/users; p95 judged at that rate, and the
    rate must be reached. A rate two users cannot reach fails clearly (through `make loadtest RATE=`)."""
    code, out = locust(shipped_server, "--slo", "lenient", "--slo-file", str(lenient_thresholds), "--target-rps", "20",
                       "--figures-file", str(tmp_path / "f.json"))
    assert code == 0, out
    assert "| achieved rate (open loop) " in out and "| throughput " not in out
    rps = json.loads((tmp_path / "f.json").read_text())["rps"]
    assert 10 <= rps <= 30, rps  # paced: not at saturation (hundreds a second here)

    code, out = gate(shipped_server, tmp_path, lenient_thresholds, "lenient", 2, "3s", rate="1000000")  # make's RATE
    assert code != 0 and "loadtest] Error 1" in out, out
    assert "of the 1e+06 req/s target: the client or the server could not keep up" in out


def test_gate_passes_over_grpc_and_binary_http_with_processes(shipped_server, lenient_thresholds, tmp_path):
    code, out = gate(shipped_server, tmp_path / "grpc", lenient_thresholds, "lenient", 2, "3s",
                     "--user-class LinearGrpcUser", f"--grpc-url {shipped_server.grpc_url}", "--batch-size 1")
    assert code == 0, out
    assert "grpc,linear [grpc]" in (tmp_path / "grpc" / "locust_stats.csv").read_text()
    got = figures(tmp_path / "grpc" / "summary.md")
    assert int(got["server: inferences (rows)"]) == int(got["server: successful requests"]) > 0  # --batch-size 1

    # 10 s: workers report every 3 s; in a 4 s run at load 10 the master counted 0 of the 68 requests sent.
    code, out = gate(shipped_server, tmp_path / "binary", lenient_thresholds, "lenient", 4, "10s",
                     "--binary", "--processes 2")
    assert code == 0, out
    assert "POST,linear [binary]" in (tmp_path / "binary" / "locust_stats.csv").read_text()


def test_gate_fails_on_wrong_answers(copy_of_shipped, serve_repo, lenient_thresholds, tmp_path):
    weights = copy_of_shipped / linear.MODEL / "1" / "linear" / "pytorch_model.bin"
    state = torch.load(weights, weights_only=True)
    torch.save({"weight": state["weight"] + 0.5, "bias": state["bias"]}, weights)  # a plausible, wrong model
    server = serve_repo(copy_of_shipped)
    code, out = gate(server, tmp_path / "report", lenient_thresholds, "lenient", 2, "3s")
    assert code != 0 and "loadtest] Error 1" in out, out  # the gate's own exit code is 1
    assert "FAIL:" in out
    assert "requests failed; most frequent: linear [json]: wrong answer: output 'y' differs from the torch reference" in out
    got = figures(tmp_path / "report" / "summary.md")
    assert int(got["failed requests (client)"]) == int(got["requests sent"]) > 0
    assert got["failed inferences (server)"] == "0"  # the server thinks all is well; only the check sees it

    # binary tensors and gRPC (one user each, one run): their answers are checked as strictly
    code, out = gate(server, tmp_path / "others", lenient_thresholds, "lenient", 2, "3s", "--binary",
                     f"--grpc-url {server.grpc_url}", "--locust-args 'LinearHttpUser LinearGrpcUser'")
    assert code != 0 and "loadtest] Error 1" in out, out
    failed = (tmp_path / "others" / "locust_failures.csv").read_text().splitlines()
    for name in ("linear [binary]", "linear [grpc]"):
        assert any(name in line and "wrong answer: output 'y' differs from the torch reference" in line
                   for line in failed), failed
    got = figures(tmp_path / "others" / "summary.md")
    assert int(got["failed requests (client)"]) == int(got["requests sent"]) > 0


def test_gate_fails_on_a_slow_server_with_the_committed_local_thresholds(copy_of_shipped, serve_repo, tmp_path):
    # The shipped model.py, delayed 300 ms per execute(): far outside any CPU SLO.
    version = copy_of_shipped / linear.MODEL / "1"
    (version / "model.py").write_text(f'''import importlib.util
import time

_spec = importlib.util.spec_from_file_location("shipped_linear", {str(SHIPPED / "1" / "model.py")!r})
_shipped = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shipped)


class TritonPythonModel(_shipped.TritonPythonModel):
    def execute(self, requests):
        time.sleep(0.3)
        return super().execute(requests)
''')
    limits = loadgate.load_thresholds(loadgate.THRESHOLDS, "local-cpu")
    assert limits.p95_ms < 300 and limits.min_rps > 4 / 0.3, "the slow model must be slow for local-cpu"
    code, out = gate(serve_repo(copy_of_shipped), tmp_path / "report", users=4, duration="4s")
    assert code != 0 and "loadtest] Error 1" in out, out
    assert f"is above the {limits.p95_ms:g} ms threshold" in out
    assert f"is below the {limits.min_rps:g} req/s threshold" in out
    assert figures(tmp_path / "report" / "summary.md")["failed requests (client)"] == "0"  # slow, not wrong


def test_gate_names_the_problem_when_nothing_answers(lenient_thresholds, tmp_path):
    from tritonops.serving.server import free_port

    port = free_port()
    code = loadgate.main(["--url", f"127.0.0.1:{port}", "--users", "1", "--duration", "2s", "--target", "lenient",
                          "--thresholds", str(lenient_thresholds), "--report-dir", str(tmp_path),
                          "--metrics-url", f"http://127.0.0.1:{port}/metrics"])
    summary = (tmp_path / "summary.md").read_text()
    assert code == 1
    assert "no request completed" in summary and "Connection refused" in summary
    assert "Server-side figures unavailable: cannot scrape" in summary


def test_gate_runs_a_distributed_master_with_a_worker(shipped_server, lenient_thresholds, tmp_path):
    """--master here, the load from a --worker (on a real setup: other client machines)."""
    import sys

    from tritonops.serving.server import free_port

    port = free_port()
    worker = subprocess.Popen([sys.executable, "-m", "locust", "-f", str(loadgate.LOCUSTFILE), "--worker",
                               "--master-host", "127.0.0.1", "--master-port", str(port)],
                              cwd=settings.ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code, out = gate(shipped_server, tmp_path, lenient_thresholds, "lenient", 4, "4s",
                         f"--locust-args '--master --master-bind-host 127.0.0.1 --master-bind-port {port} "
                         f"--expect-workers 1 --expect-workers-max-wait 60'")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert code == 0, out
    got = figures(tmp_path / "summary.md")
    assert int(got["requests sent"]) == int(got["server: successful requests"]) > 0


def test_locustcost_stops_locust_with_sigint_even_when_started_with_it_ignored(shipped_server, tmp_path):
    """tritonops.bench.locustcost ends Locust with SIGINT (as Ctrl-C: the HTML report is written). Two ways that
    failed, each a bench smoke run that waited 120 s: Locust started by a background job (`make test &`),
    which starts with SIGINT ignored (2 runs of 2), and KeyboardInterrupt raised inside a gRPC call,
    which left a lock held (1 run in 3 under load). The Locust file now takes SIGINT through gevent's hub."""
    ignore_sigint_then_exec = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                               "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
    done = subprocess.run(
        [sys.executable, "-c", ignore_sigint_then_exec, "-m", "tritonops.bench.locustcost",
         "--url", shipped_server.http_url, "--grpc-url", shipped_server.grpc_url,
         "--metrics-url", shipped_server.metrics_url, "--protocols", "json,grpc", "--users", "4", "--window", "1",
         "--report-dir", str(tmp_path)],
        cwd=settings.ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    for protocol in ("json", "grpc"):
        assert f"{protocol:6} users 4:" in done.stdout, done.stdout
        assert (tmp_path / f"locust-{protocol}.html").stat().st_size > 0  # written on SIGINT only (SIGTERM skips it)
    assert done.stdout.count(", 0 failed)") == 2, done.stdout


def test_embed_gate_passes_on_the_shipped_pipeline(embed_server, lenient_thresholds, tmp_path):
    """make loadtest MODEL=embed: every answer checked against the references computed at start, over JSON
    with mixed batches of sentences, and over binary tensors one sentence a request."""
    code, out = gate(embed_server, tmp_path / "json", lenient_thresholds, "lenient", 4, "4s", model="embed")
    assert code == 0, out
    assert "# Load test of embed at " in out and "\nPASS\n" in out
    assert "POST,embed [json]" in (tmp_path / "json" / "locust_stats.csv").read_text()
    got = figures(tmp_path / "json" / "summary.md")
    assert got["failed requests (client)"] == "0" and got["server: failed requests"] == "0"
    requests = int(got["server: successful requests"])
    assert requests >= int(got["requests sent"]) > 0
    assert int(got["server: inferences (rows)"]) > requests  # batches of 1..8 sentences, 4.5 on average
    assert float(got["server: encoder avg batch formed"]) >= 1  # the step the dynamic batcher feeds

    code, out = gate(embed_server, tmp_path / "binary", lenient_thresholds, "lenient", 2, "3s", "--binary",
                     "--batch-size 1", model="embed")
    assert code == 0, out
    assert "POST,embed [binary]" in (tmp_path / "binary" / "locust_stats.csv").read_text()
    got = figures(tmp_path / "binary" / "summary.md")
    assert int(got["server: inferences (rows)"]) == int(got["server: successful requests"]) > 0  # --batch-size 1


# The shipped encoder, wrong on purpose in two ways, taking turns by execute() call: unnormalised
# embeddings (x3: cosine to the reference still 1, only the norm check sees it) and shifted ones (every
# value +0.1, then normalised: unit length, cosine far below MIN_COSINE).
BROKEN_ENCODER = """import importlib.util

import numpy as np
import triton_python_backend_utils as pb_utils

_spec = importlib.util.spec_from_file_location("shipped_encoder", {shipped!r})
_shipped = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shipped)


class TritonPythonModel(_shipped.TritonPythonModel):
    calls = 0

    def execute(self, requests):
        self.calls += 1
        answers = []
        for response in super().execute(requests):
            if response.has_error():
                answers.append(response)
                continue
            (tensor,) = response.output_tensors()
            values = tensor.as_numpy()
            if self.calls % 2:
                values = values * 3
            else:
                values = values + 0.1
                values = values / np.linalg.norm(values, axis=1, keepdims=True)
            answers.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(tensor.name(), values.astype(np.float32))]))
        return answers
"""


def test_embed_gate_fails_on_wrong_embeddings(copy_of_embed, serve_repo, lenient_thresholds, tmp_path):
    shipped = settings.MODEL_REPOSITORY / embedding.ENCODER / embedding.VERSION / "model.py"
    (copy_of_embed / embedding.ENCODER / embedding.VERSION / "model.py").write_text(BROKEN_ENCODER.format(shipped=str(shipped)))
    server = serve_repo(copy_of_embed)
    code, out = gate(server, tmp_path, lenient_thresholds, "lenient", 2, "4s", model="embed")
    assert code != 0 and "loadtest] Error 1" in out, out  # the gate's own exit code is 1
    assert "FAIL:" in out and "requests failed; most frequent: embed [json]: wrong answer: output 'embedding' " in out
    failed = (tmp_path / "locust_failures.csv").read_text()
    assert "wrong answer: output 'embedding' is not L2-normalised" in failed, failed
    assert f"wrong answer: output 'embedding' differs from the reference (cosine below {embedding.MIN_COSINE})" in failed
    got = figures(tmp_path / "summary.md")
    assert int(got["failed requests (client)"]) == int(got["requests sent"]) > 0
    assert got["failed inferences (server)"] == "0"  # the server thinks all is well; only the checks see it
