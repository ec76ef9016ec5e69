"""Record real gateway figures for the canary decision's tests (tests/canary/recorded/*.json).

    .venv/bin/python tests/canary/record_figures.py [scenario ...]     (needs HAProxy; ~1 min)

Two wheel tritonservers (linear only) behind this machine's HAProxy with the project's gateway config,
as a fleet gateway has them: gpu1 the baseline, gpu2 the canary. Four client threads send the seed
request through the gateway's HTTP port for the window; HAProxy's /metrics is scraped at the window's
start and end (the triton_http servers' series are kept: those the analysis reads). Scenarios:
  good     both servers healthy;
  failing  the canary's model stub SIGKILLed as the window starts (its inferences answer 500 until
           the gateway's check takes it out);
  slow     the canary's tritonserver stopped 2/3 of the time (SIGSTOP 20 ms, SIGCONT 10 ms): slower
           answers, right ones.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tritonops import settings  # noqa: E402
from tritonops.models import linear  # noqa: E402
from tritonops.stack import gateway  # noqa: E402
from tritonops.serving.server import LocalServer, free_port  # noqa: E402

RECORDED = Path(__file__).with_name("recorded")
CANARY, BASELINE = "gpu2", "gpu1"
WINDOW_S = 8.0
THREADS = 4
KEPT = ("haproxy_server_http_responses_total", "haproxy_server_response_time_average_seconds")


def kept_series(text: str) -> str:
    """The analysis's families for backend triton_http, exporter text as scraped (HELP/TYPE included)."""
    lines = [line for line in text.splitlines()
             if any(line.startswith((f"# HELP {k} ", f"# TYPE {k} ")) for k in KEPT)
             or (line.startswith(KEPT) and 'proxy="triton_http"' in line)]
    return "\n".join(lines) + "\n"


def scrape(gw: gateway.LocalGateway) -> str:
    with urllib.request.urlopen(f"{gw.stats_url}/metrics", timeout=10) as r:
        return kept_series(r.read().decode())


def load(url: str, stop: threading.Event, counts: dict[str, int], lock: threading.Lock) -> None:
    body = json.dumps(linear.seed_request_json()).encode()
    while not stop.is_set():
        request = urllib.request.Request(f"http://{url}/v2/models/{linear.MODEL}/infer", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        with lock:
            counts[str(status)] = counts.get(str(status), 0) + 1


def slow_down(pid: int, stop: threading.Event) -> None:
    while not stop.is_set():
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.020)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.010)


def record(scenario: str, work: Path) -> dict:
    repo = work / "repository"
    if not repo.exists():
        repo.mkdir(parents=True)
        (repo / linear.MODEL).symlink_to(settings.MODEL_REPOSITORY / linear.MODEL)
    servers = {name: LocalServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                 log_path=work / f"{scenario}-{name}.log").start() for name in (BASELINE, CANARY)}
    try:
        backends = [gateway.Backend(name, "127.0.0.1", s.ports["http"], s.ports["grpc"], s.ports["metrics"])
                    for name, s in servers.items()]
        ports = {k: free_port() for k in ("http", "grpc", "metrics", "stats")}
        with gateway.LocalGateway(backends, work / f"{scenario}-gateway", ports, repository=repo) as gw:
            for _ in range(50):  # warm both servers (HAProxy's averages start from their first answers)
                urllib.request.urlopen(urllib.request.Request(
                    f"http://{gw.http_url}/v2/models/{linear.MODEL}/infer",
                    data=json.dumps(linear.seed_request_json()).encode()), timeout=10).read()
            before = scrape(gw)
            stop, counts, lock = threading.Event(), {}, threading.Lock()
            helpers = [threading.Thread(target=load, args=(gw.http_url, stop, counts, lock)) for _ in range(THREADS)]
            canary = servers[CANARY]
            if scenario == "failing":
                stubs = [p for p in canary.descendants() if p != canary.proc.pid]
                for pid in stubs:
                    os.kill(pid, signal.SIGKILL)
            elif scenario == "slow":
                helpers.append(threading.Thread(target=slow_down, args=(canary.proc.pid, stop)))
            for t in helpers:
                t.start()
            time.sleep(WINDOW_S)
            stop.set()
            for t in helpers:
                t.join()
            if scenario == "slow":
                os.kill(canary.proc.pid, signal.SIGCONT)
            after = scrape(gw)
    finally:
        for s in servers.values():
            s.stop()
    return {"scenario": scenario, "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "haproxy": settings.get("HAPROXY_VERSION"), "canary": CANARY, "baseline": [BASELINE],
            "window_s": WINDOW_S, "client_threads": THREADS, "client_statuses": counts,
            "before": before, "after": after}


def main(argv: list[str]) -> int:
    scenarios = argv or ["good", "failing", "slow"]
    RECORDED.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="canary-record-") as tmp:
        for scenario in scenarios:
            result = record(scenario, Path(tmp))
            (RECORDED / f"{scenario}.json").write_text(json.dumps(result, indent=1) + "\n")
            print(f"{scenario}: client statuses {result['client_statuses']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
