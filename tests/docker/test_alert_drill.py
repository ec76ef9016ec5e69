"""Alert drill (docs/alerts.md): the compose stack with the monitoring profile and two Triton replicas;
one replica stopped, GatewayBackendDown must be firing in Prometheus' /api/v1/alerts for that server
within the rule's `for:` plus one evaluation interval plus one scrape interval of the gateway taking it
out, and no other alert with it. Started again, the alert must clear. The figures are printed."""
from __future__ import annotations

import json
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime

import pytest
import yaml
from stacks import start_stack, wait_for

from tritonops.stack import compose

pytestmark = pytest.mark.docker
ALERT = "GatewayBackendDown"
BACKENDS = ("triton_http", "triton_grpc")
# Polling here (the gateway every 0.5 s, the alerts every 1 s) and a busy 2-core box's late scrape or
# evaluation: added to the bound, never hiding a rule that waits a whole evaluation or scrape more.
SLACK_S = 5.0


def seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    assert duration[-1] in units and duration[:-1].isdigit(), duration
    return float(duration[:-1]) * units[duration[-1]]


@pytest.fixture(scope="module")
def replicated(built_images, tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("alert-drill"), monitoring=True,
                        services=("triton", "gateway", "prometheus"), TRITON_REPLICAS="2")
    try:
        yield stack
    finally:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)


def prometheus(stack, path: str) -> dict:
    env = stack.env
    with urllib.request.urlopen(f"http://{env['BIND_ADDRESS']}:{env['HOST_PROMETHEUS_PORT']}/api/v1/{path}",
                                timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]


def firing(stack) -> list[dict]:
    return [a for a in prometheus(stack, "alerts")["alerts"] if a["state"] == "firing"]


def gateway_stats(stack, docker_client) -> list[dict[str, str]]:
    """The client backends' server rows of the gateway's stats CSV, read inside its container."""
    container = docker_client.containers.get(stack.container_ids("gateway")[0])
    fetch = (f"exec 3<>/dev/tcp/127.0.0.1/{stack.env['GATEWAY_STATS_PORT']}; "
             "printf 'GET /stats;csv HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3")
    answer = container.exec_run(["bash", "-c", fetch]).output.decode()
    if "# pxname" not in answer:
        return []
    lines = [line for line in answer[answer.index("# pxname"):].splitlines() if line.count(",") > 2]
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    return [r for r in rows if r["pxname"] in BACKENDS and r["svname"] not in ("FRONTEND", "BACKEND")]


def active_at(alert: dict) -> float:
    """The alert's activeAt (when it went pending) as a Unix time; Prometheus writes nanoseconds."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", alert["activeAt"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def test_a_stopped_replica_fires_backend_down_within_its_bound(replicated, docker_client):
    stack = replicated
    rule = next(r for g in yaml.safe_load(compose.ALERT_RULES.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == ALERT)
    config = yaml.safe_load(compose.prometheus_config(stack.env))["global"]
    hold, evaluation, scrape = (seconds(x) for x in (rule["for"], config["evaluation_interval"], config["scrape_interval"]))
    bound = hold + evaluation + scrape

    def all_up():
        rows = gateway_stats(stack, docker_client)
        return len(rows) == 2 * len(BACKENDS) and {r["status"] for r in rows} == {"UP"}

    wait_for("both replicas UP at the gateway", all_up, timeout=60, every=1)
    groups = {g["name"] for g in prometheus(stack, "rules")["groups"]}
    assert {"tritonops-gateway", "tritonops-triton", "tritonops-tls"} <= groups, groups

    def count(query: str) -> int:
        return len(prometheus(stack, "query?query=" + urllib.parse.quote(query))["result"])

    wait_for("Prometheus scraping the gateway's servers UP",
             lambda: count('haproxy_server_status{state="UP",proxy="triton_http"} == 1') == 2)
    # Each replica a target of its own (DNS service discovery), so their counters never mix.
    wait_for("Prometheus scraping both replicas", lambda: count('up{job="triton"} == 1') == 2)
    assert firing(stack) == []

    victim = docker_client.containers.get(stack.container_ids("triton")[0])
    started = time.time()
    stopper = threading.Thread(target=victim.stop, kwargs={"timeout": 40})  # the graceful stop blocks until it exits
    stopper.start()
    out = wait_for("the gateway taking a server out", lambda: [
        # "UP 1/2" (one check failed) is still UP, and its lastchg still counts from when it came UP
        (time.time(), r) for r in gateway_stats(stack, docker_client) if r["status"].split()[0] != "UP"], timeout=60, every=0.5)
    # When the gateway took it out: the poll's time less HAProxy's own seconds since the change (lastchg,
    # whole seconds), so a slow `docker exec` on a busy box does not shift it.
    seen, row = out[0]
    gateway_out, server = seen - int(row["lastchg"]), row["svname"]

    def ours():
        alerts = firing(stack)
        mine = [a for a in alerts if a["labels"]["alertname"] == ALERT and a["labels"]["server"] == server]
        return (time.time(), alerts, mine) if mine else None

    fired, alerts, mine = wait_for(f"{ALERT} firing for {server}", ours, timeout=bound + 60, every=1)
    stopper.join(timeout=60)
    elapsed, pending_after, held = fired - gateway_out, active_at(mine[0]) - gateway_out, fired - active_at(mine[0])
    print(f"\nalert drill: stopped replica = gateway server {server}; gateway took it out {gateway_out - started:.1f} s "
          f"after the stop began; {ALERT} pending {pending_after:.1f} s and firing {elapsed:.1f} s after that (bound: "
          f"for {hold:g} s + evaluation {evaluation:g} s + scrape {scrape:g} s = {bound:g} s, + {SLACK_S:g} s polling "
          f"slack); pending for {held:.1f} s", file=sys.stderr)
    assert elapsed <= bound + SLACK_S, f"{ALERT} fired {elapsed:.1f} s after the gateway took {server} out (bound {bound:g} s)"
    assert held >= hold - 1, f"{ALERT} fired {held:.1f} s after it went pending, before its for: {hold:g} s"
    # One alert per client backend for that server, and nothing else (no restart, scrape or 5xx alert).
    assert sorted((a["labels"]["alertname"], a["labels"].get("proxy"), a["labels"].get("server")) for a in alerts) == \
        sorted((ALERT, b, server) for b in BACKENDS), alerts
    assert all(a["labels"]["host"] == "gateway" for a in alerts), alerts

    victim.start()
    wait_for("both replicas UP at the gateway again", all_up, timeout=120, every=1)
    back = time.monotonic()
    wait_for(f"{ALERT} cleared", lambda: not any(a["labels"]["alertname"] == ALERT for a in firing(stack)),
             timeout=evaluation + scrape + 30, every=1)
    print(f"alert drill: {ALERT} cleared {time.monotonic() - back:.1f} s after the gateway had the replica UP again",
          file=sys.stderr)
