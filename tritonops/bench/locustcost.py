"""What a Locust file (loadtests/linear.py; loadtests/models.py --model linear, the descriptor-driven file
on linear's sample) costs its client: CPU per validated request, and throughput.

Method: Locust runs headless against a running server. Once the server counts answered requests
(Locust has imported everything, built its request pool and started its users) and a warm-up has
passed, the CPU time (user + system) of Locust's whole process tree is read with psutil, together
with the server's count of successful requests (its /metrics); both are read again after the
measurement window, and Locust is then stopped. So

    client CPU us/request = (CPU after - CPU before) / (requests after - requests before)

over the steady state only: start-up (imports, torch, the pool) and shut-down are left out, and no
second run is subtracted. Throughput is the same request count over the window's wall time. Every
answer is still checked by the Locust file: a run with any failed request is an error, not a figure.

    python -m tritonops.bench.locustcost --url 127.0.0.1:8000 --grpc-url 127.0.0.1:8001 \\
        --metrics-url http://127.0.0.1:8002/metrics --protocols json,binary,grpc --users 16
    python -m tritonops.bench.locustcost ... --protocols json --files linear,models --batch-size 3
        # both files on the same requests (linear's descriptor sample has 3 rows), then their ratio
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .. import settings
from ..models import linear
from ..serving import loadgate, metrics

PROTOCOLS = ("json", "binary", "grpc")
# Locust files priced: name -> (file, its extra arguments). models: loadtests/models.py on linear's sample.
FILES = {"linear": (loadgate.LOCUSTFILE, []), "models": (loadgate.MODELS_FILE, ["--model", linear.MODEL])}
WARMUP_S = 2.0
# Locust's start (imports, torch, the request pool) before its first answer, on a busy 2-core box.
START_LIMIT_S = 120.0


@dataclass(frozen=True)
class Cost:
    protocol: str
    users: int
    window_s: float
    requests: int  # answered by the server within the window
    throughput: float  # requests/s within the window
    cpu_us: float  # Locust's CPU (its process tree, user + system) per request within the window
    server: metrics.ServerFigures  # the server's figures for the window
    result: loadgate.LocustResult  # Locust's own figures for its whole run (latencies, failures)


def tree_cpu_s(proc: psutil.Process) -> float:
    """user + system seconds of a process and all its descendants now (Locust --processes forks workers)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _served(metrics_url: str) -> tuple[float, dict[str, float]]:
    figures = metrics.scrape(metrics_url, linear.MODEL)
    return figures["nv_inference_request_success"], figures


@dataclass(frozen=True)
class Window:
    seconds: float
    requests: int  # answered by the server
    cpu_s: float  # the load generator's process tree, user + system
    server: metrics.ServerFigures


def steady_window(proc, metrics_url: str, warmup_s: float, window_s: float, log: Path) -> Window:
    """Wait for the server's first answer to a load generator (a Popen), then warm-up, then price a window."""
    tree = psutil.Process(proc.pid)

    def check_running(when: str) -> None:
        if proc.poll() is not None:
            raise loadgate.GateError(f"the load generator exited with {proc.returncode} {when}; "
                                     f"its log ({log}):\n{loadgate._tail(log)}")

    first, _ = _served(metrics_url)
    deadline = time.monotonic() + START_LIMIT_S
    while _served(metrics_url)[0] == first:  # no answer yet: still starting
        check_running("before its first answer")
        if time.monotonic() > deadline:
            raise loadgate.GateError(f"no answered request within {START_LIMIT_S:g} s; its log ({log}):\n"
                                     f"{loadgate._tail(log)}")
        time.sleep(0.1)
    time.sleep(warmup_s)
    cpu0, t0, (n0, before) = tree_cpu_s(tree), time.monotonic(), _served(metrics_url)
    time.sleep(window_s)
    cpu1, t1, (n1, after) = tree_cpu_s(tree), time.monotonic(), _served(metrics_url)
    check_running("within the measurement window")
    if n1 <= n0:
        raise loadgate.GateError(f"the server answered nothing within the {window_s:g} s window")
    return Window(t1 - t0, int(n1 - n0), cpu1 - cpu0, metrics.difference(before, after))


def measure(http_url: str, grpc_url: str, metrics_url: str, protocol: str, users: int, window_s: float,
            report_dir: Path, *, warmup_s: float | None = None, batch_size: int = 1, prefix: str = "",
            file: str = "linear") -> Cost:
    """Run Locust with `users` users of one protocol (json, binary, grpc) and price its steady state.
    warmup_s: after the first answer, before the window (default WARMUP_S, at most a third of the window)."""
    warmup_s = min(WARMUP_S, window_s / 3) if warmup_s is None else warmup_s
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
    if file not in FILES or (file != "linear" and protocol == "grpc"):
        raise ValueError(f"Locust file {file!r} with {protocol}: choose from {', '.join(FILES)} (gRPC: linear only)")
    kwargs = {"grpc": {"user_class": "LinearGrpcUser", "grpc_url": grpc_url}, "binary": {"binary": True}}.get(protocol, {})
    locustfile, extra = FILES[file]
    # Locust's own -t outlasts the window; it is stopped once measured.
    run_time = f"{int(START_LIMIT_S + warmup_s + window_s + 60)}s"
    run = loadgate.start_locust(f"http://{http_url}", users, run_time, report_dir, prefix=prefix or f"locust-{protocol}" + ("" if file == "linear" else f"-{file}"),
                                batch_size=batch_size, locustfile=locustfile, extra=extra, **kwargs)
    try:
        window = steady_window(run.proc, metrics_url, warmup_s, window_s, run.log)
        # SIGINT, as Ctrl-C: Locust stops its users and writes its HTML report and final stats (SIGTERM skips the report)
        run.proc.send_signal(signal.SIGINT)
        run.proc.wait(timeout=loadgate.EXIT_MARGIN_S)
    except subprocess.TimeoutExpired:
        run.kill()
        raise loadgate.GateError(f"Locust did not exit within {loadgate.EXIT_MARGIN_S:g} s of SIGINT: killed; "
                                 f"its log ({run.log}):\n{loadgate._tail(run.log)}") from None
    except BaseException:
        run.kill()
        raise
    result = run.results()
    if result.failures or not result.requests:
        raise loadgate.GateError(f"Locust {protocol}: {result.failures} of {result.requests} requests failed: "
                                 f"{result.errors[:1] or result.exceptions[-1:]}")
    return Cost(protocol, users, window.seconds, window.requests, window.requests / window.seconds,
                window.cpu_s / window.requests * 1e6, window.server, result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonops.bench.locustcost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="server HTTP host:port")
    parser.add_argument("--grpc-url", required=True, help="server gRPC host:port")
    parser.add_argument("--metrics-url", required=True, help="server /metrics URL")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--files", default="linear",
                        help=f"Locust files to price, in turn ({', '.join(FILES)}); several: their CPU ratio too")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="linear.py's rows per request; 0 mixes 1..max_batch_size (models.py: the sample's)")
    parser.add_argument("--window", type=float, default=10.0, help="measurement window (s)")
    parser.add_argument("--warmup", type=float, default=None,
                        help=f"seconds after the first answer before measuring (default {WARMUP_S:g}, at most window/3)")
    parser.add_argument("--report-dir", type=Path, default=settings.ROOT / "reports" / "locustcost")
    a = parser.parse_args(argv)
    files = [f.strip() for f in a.files.split(",") if f.strip()]
    for protocol in [p.strip() for p in a.protocols.split(",") if p.strip()]:
        costs = {}
        for file in files:
            try:
                c = measure(a.url, a.grpc_url, a.metrics_url, protocol, a.users, a.window, a.report_dir,
                            warmup_s=a.warmup, batch_size=a.batch_size, file=file)
            except (loadgate.GateError, ValueError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            costs[file] = c
            print(f"{file:6} {protocol:6} users {c.users}: {c.throughput:8.0f} req/s, client CPU {c.cpu_us:6.1f} us/req "
                  f"({c.requests} requests in {c.window_s:.1f} s; Locust p50 {c.result.p50_ms:g} ms, "
                  f"p99 {c.result.p99_ms:g} ms, {c.result.failures} failed)", flush=True)
        if len(costs) > 1:
            base, *others = files
            print(f"{protocol:6} CPU per request relative to {base}: "
                  + ", ".join(f"{f} {costs[f].cpu_us / costs[base].cpu_us:.2f}x" for f in others), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
