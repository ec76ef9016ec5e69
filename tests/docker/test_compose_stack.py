"""The compose stack, for real: the CPU image and the gateway from images/, compose/compose.yaml
unmodified, model_repository mounted as `make up` mounts it, the seed's request and embed's sentences
through the gateway's published 127.0.0.1 ports, the chunked-body drill, Prometheus, hardening,
restart, down.

Tests run in file order against one stack; the last one takes it down.
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import embedclient
import hostile
import pytest

from tritonops import settings
from tritonops.models import embedding, linear
from tritonops.serving import smoke
from tritonops.stack import compose
from tritonops.stack.compose import BASE_FILE, COMPOSE_DIR
from tritonops.serving.server import check_port_free

from stacks import wait_for

pytestmark = pytest.mark.docker
STACK_SERVES_EMBED = True  # conftest's stack: model_repository as `make up` mounts it, linear and embed

DASHBOARD = COMPOSE_DIR / "grafana" / "dashboards" / "triton.json"
# Triton's log: "I1128 04:04:08.151059 9 model_lifecycle.cc:472] "loading: encoder:1"" and "successfully loaded 'encoder'".
LOG_TIME = re.compile(r"^[IWE](\d{4} \d\d:\d\d:\d\d\.\d+) +\d+ (\S+)\] (.*)$", re.M)


def urls(stack) -> tuple[str, str, str]:
    env = stack.env
    host = env["BIND_ADDRESS"]
    return (f"{host}:{env['HOST_HTTP_PORT']}", f"{host}:{env['HOST_GRPC_PORT']}",
            f"http://{host}:{env['HOST_METRICS_PORT']}/metrics")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def prometheus(stack, path: str, **params) -> dict:
    env = stack.env
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    body = json.loads(get(f"http://{env['BIND_ADDRESS']}:{env['HOST_PROMETHEUS_PORT']}/api/v1/{path}{query}"))
    assert body["status"] == "success", body
    return body["data"]


def triton_container(stack, docker_client):
    return service_container(stack, docker_client, "triton")


def service_container(stack, docker_client, service: str):
    ids = stack.container_ids(service)
    assert len(ids) == 1, f"expected one {service} container, got {ids}"
    return docker_client.containers.get(ids[0])


def test_memlock_detection_agrees_with_the_engine(built_images, capsys):
    """MEMLOCK_LIMIT=-1 where the engine grants it; else the engine's hard limit, said aloud, and a
    container with that limit starts (runc's `rlimit type 8` is never what a user reads)."""
    values = {**settings.versions(), "MEMLOCK_LIMIT": "-1"}
    override = compose.memlock_override(values)
    run = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/true"]
    unlimited = subprocess.run([*run, "--ulimit", "memlock=-1:-1", built_images["gateway"]], capture_output=True, text=True)
    assert (unlimited.returncode == 0) == (override == {}), (override, unlimited.stderr)
    if override:
        limit = override["MEMLOCK_LIMIT"]
        assert f"using its hard limit, MEMLOCK_LIMIT={limit}" in capsys.readouterr().err
        started = subprocess.run([*run, "--ulimit", f"memlock={limit}:{limit}", built_images["gateway"]],
                                 capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
    assert compose.memlock_override({**values, "MEMLOCK_LIMIT": "65536"}) == {}  # a chosen limit stands


def test_seed_request_over_published_http_and_grpc(stack):
    http_url, grpc_url, _ = urls(stack)
    out = io.StringIO()
    smoke.run(http_url, grpc_url, out=out)  # raises SmokeFailure naming the path and the mismatch
    assert out.getvalue().count("ok ") == 6, out.getvalue()  # linear and embed, 3 paths each


def load_times(log: str) -> dict[str, float]:
    """Seconds from tritonserver's first log line to each model's "successfully loaded" line."""
    lines = [(datetime.strptime(m.group(1), "%m%d %H:%M:%S.%f"), m.group(3)) for m in LOG_TIME.finditer(log)]
    assert lines, f"no Triton log lines in: {log[:500]!r}"
    start = lines[0][0]
    return {m.group(1): round((t - start).total_seconds(), 1)
            for t, text in lines if (m := re.search(r"successfully loaded '(\w+)'", text))}


def test_embed_and_linear_side_by_side_through_the_gateway(stack, docker_client):
    """`make up` serves both models of model_repository: embed's fixed sentences (different lengths,
    scripts, emoji) through the gateway's published HTTP and gRPC ports, each answer within cosine
    0.9999 of the in-process reference, and linear's seed request on the same ports. The gateway
    passes /v2/models/embed/... inference (it refuses management paths only) and its health check
    sends a sample of each, not of embed's steps. Prints how long the container took to load each model
    (Triton's log)."""
    http_url, grpc_url, _ = urls(stack)
    assert embedclient.problems(http_url, grpc_url) == []
    smoke.run(http_url, grpc_url, out=io.StringIO())
    config = Path(stack.env["GATEWAY_CONFIG"]).read_text()
    sent = re.findall(r"^    http-check send meth POST uri (\S+) ", config, re.M)
    assert sent == ["/v2/models/embed/infer", "/v2/models/linear/infer"] * 2, sent  # HTTP and gRPC backends
    loaded = load_times(triton_container(stack, docker_client).logs().decode())
    assert {"linear", "tokenizer", "encoder", "embed"} <= set(loaded), loaded
    print(f"\nmodels loaded in the container, s after tritonserver's first log line: {loaded}", file=sys.stderr)


def test_metrics_published_and_counting(stack):
    """embed's counters count each request exactly. The liveness checks also send embed one sample (one row)
    every few seconds, so the request counter alone cannot tell ours apart: each request adds 1 to
    request_success and its rows to inference_count, so (rows - requests) grows by exactly one for our
    request of two sentences and by nothing for a one-row check."""
    http_url, _, metrics_url = urls(stack)
    counters = ("nv_inference_request_success", "nv_inference_count")

    def scrape() -> dict[str, int]:
        text = get(metrics_url).decode()
        return {name: int(re.search(rf'^{name}\{{model="{embedding.MODEL}",version="{embedding.VERSION}"\}} (\d+)',
                                    text, re.M).group(1)) for name in counters}

    before = scrape()
    texts = list(embedding.SENTENCES[:2])
    assert embedding.check_output(texts, embedclient.infer_http(http_url, texts)) is None
    after = scrape()
    requests, rows = (after[name] - before[name] for name in counters)
    assert requests >= 1 and rows - requests == len(texts) - 1, (before, after)


def test_prometheus_scrapes_triton(stack, docker_client):
    seen = []

    def triton_target():
        seen[:] = [t for t in prometheus(stack, "targets")["activeTargets"] if t["labels"]["job"] == "triton"]
        return [t for t in seen if t["health"] == "up"]

    try:
        target = wait_for("an `up` Prometheus target for job triton", triton_target)[0]
    except pytest.fail.Exception:
        pytest.fail("no `up` target for job triton; Prometheus reports: "
                    + "; ".join(f"{t['scrapeUrl']} {t['health']} {t['lastError']!r}" for t in seen))
    # Each replica by its address (DNS service discovery of the service name: tritonops/stack/prometheus.py).
    address = next(iter(triton_container(stack, docker_client).attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    assert target["scrapeUrl"] == f"http://{address}:{stack.env['METRICS_PORT']}/metrics"
    assert target["labels"]["host"] == "triton"  # the dashboard's host variable (tritonops/stack/prometheus.py)
    up = prometheus(stack, "query", query='up{job="triton"}')["result"]
    assert [r["value"][1] for r in up] == ["1"]


def test_dashboard_queries_use_metrics_prometheus_scraped(stack):
    http_url, grpc_url, _ = urls(stack)
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("request rate", "p50", "p99", "queue", "batch size", "gpu utilisation"):
        assert needed in titles, f"{DASHBOARD}: no panel for {needed!r}"
    datasource = (COMPOSE_DIR / "grafana/provisioning/datasources/prometheus.yml").read_text()
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {"prometheus"} and "uid: prometheus" in datasource

    # One series per host (the fleet's Prometheus labels each target with its inventory name; compose's
    # with the service name): every query filters on the dashboard's host variable and names the host.
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["host"]["multi"] and variables["host"]["includeAll"], variables
    targets = [t for p in dashboard["panels"] for t in p["targets"]]
    assert all('host=~"$host"' in t["expr"] and t["legendFormat"].startswith("{{host}}") for t in targets), targets
    # What Grafana sends with "All" selected: the variable's allValue in place of $host.
    exprs = [t["expr"].replace("$host", variables["host"]["allValue"]) for t in targets]
    used = {m for e in exprs for m in re.findall(r"\b(nv_[a-z_]+)", e)}

    cpu_exprs = [e for e in exprs if not re.search(r"\bnv_gpu_", e)]

    def all_queries_answer():
        """Traffic, then every metric name scraped and every CPU-side query with series (rate()
        needs two scrapes of a changing counter; the scrape interval is 5 s)."""
        for _ in range(5):
            smoke.infer_http(http_url, linear.SEED_X, binary=False)
            smoke.infer_grpc(grpc_url, linear.SEED_X)
        names = set(prometheus(stack, "label/__name__/values"))
        if not used - {m for m in used if m.startswith("nv_gpu_")} <= names:
            return None
        return names if all(prometheus(stack, "query", query=e)["result"] for e in cpu_exprs) else None

    names = wait_for(f"series for every dashboard query {cpu_exprs}", all_queries_answer, timeout=120, every=3)
    # The CPU image runs with --allow-gpu-metrics=false: GPU panels are the only ones without data here.
    assert not {n for n in names if n.startswith("nv_gpu_")}
    for expr in exprs:
        prometheus(stack, "query", query=expr)  # the GPU queries too must parse (status success)
    # The variable's choices: label_values(nv_inference_request_success, host).
    assert prometheus(stack, "label/host/values", **{"match[]": "nv_inference_request_success"}) == ["triton"]


def test_container_hardening(stack, docker_client):
    container = triton_container(stack, docker_client)
    attrs, host = container.attrs, container.attrs["HostConfig"]
    uid = container.exec_run(["id", "-u"]).output.decode().strip()
    assert uid.isdigit() and uid != "0", f"server runs as uid {uid}"
    models = [m for m in attrs["Mounts"] if m["Destination"] == "/models"]
    assert len(models) == 1 and models[0]["RW"] is False, attrs["Mounts"]
    write = container.exec_run(["touch", "/models/probe"])
    assert write.exit_code != 0 and b"Read-only file system" in write.output
    assert host["ReadonlyRootfs"] is True and host["Init"] is True
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]}
    memlock = int(stack.env["MEMLOCK_LIMIT"])
    assert ulimits == {"memlock": (memlock, memlock), "stack": (67108864, 67108864)}
    shm = settings.get("SHM_SIZE")
    want = int(shm[:-1]) * {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[shm[-1].lower()]
    assert host["ShmSize"] == want
    seen = container.exec_run(["python3", "-c", "import os; s = os.statvfs('/dev/shm'); print(s.f_blocks * s.f_frsize)"])
    assert int(seen.output) == want, seen.output
    labels = container.image.labels
    assert labels["com.nvidia.tritonserver.version"] == settings.get("CPU_TRITON_VERSION")  # the stand-in's Triton
    assert labels["io.tritonops.torch.version"] == settings.get("TORCH_VERSION")
    assert labels["io.tritonops.transformers.version"] == settings.get("TRANSFORMERS_VERSION")
    assert container.attrs["State"]["Health"]["Status"] == "healthy"


def test_only_the_gateway_publishes_and_it_runs_hardened(stack, docker_client):
    triton = triton_container(stack, docker_client)
    assert not any(triton.attrs["NetworkSettings"]["Ports"].get(p) for p in triton.attrs["NetworkSettings"]["Ports"]), \
        triton.attrs["NetworkSettings"]["Ports"]
    gateway = service_container(stack, docker_client, "gateway")
    published = {int(k.split("/")[0]): int(v[0]["HostPort"]) for k, v in gateway.attrs["NetworkSettings"]["Ports"].items() if v}
    env = stack.env
    assert published == {int(env[c]): int(env[h]) for h, c in (("HOST_HTTP_PORT", "HTTP_PORT"),
                         ("HOST_GRPC_PORT", "GRPC_PORT"), ("HOST_METRICS_PORT", "METRICS_PORT"))}
    host = gateway.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True, host
    assert "no-new-privileges:true" in host["SecurityOpt"]
    status = gateway.exec_run(["cat", "/proc/1/status"]).output.decode()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "0" * 16 and fields["NoNewPrivs"].strip() == "1", status
    assert fields["Uid"].split()[0] != "0"
    assert gateway.attrs["State"]["Health"]["Status"] == "healthy"


def test_chunked_bomb_through_the_stack_leaves_triton_running(stack, docker_client):
    """CVE-2025-23310 drill: 7 million one-byte chunks (42 MB) to the published HTTP port. The
    gateway refuses it; Triton is not restarted and answers (tests/gateway has the control: the
    same request kills a 2.51 server that has no gateway in front)."""
    triton = triton_container(stack, docker_client)
    restarts = triton.attrs["RestartCount"]
    env = stack.env
    answer = hostile.send_raw(env["BIND_ADDRESS"], int(env["HOST_HTTP_PORT"]), hostile.chunked_post(hostile.BOMB_CHUNKS))
    assert hostile.status_of(answer) == 413, answer[:200]
    time.sleep(2)  # a crash would show by now (the stack's own crash took Triton down at once)
    triton.reload()
    assert triton.attrs["RestartCount"] == restarts and triton.attrs["State"]["Running"], triton.attrs["State"]
    assert triton.attrs["State"]["Health"]["Status"] == "healthy"
    http_url, grpc_url, _ = urls(stack)
    smoke.run(http_url, grpc_url, out=io.StringIO())


def test_load_gate_passes_through_the_gateway(stack, tmp_path):
    """make loadtest, unchanged: Locust to the published HTTP port, Triton's counters through the
    gateway's metrics port (the relay), judged on thresholds no healthy server misses."""
    http_url, _, metrics_url = urls(stack)
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text("[lenient]\np95_ms = 60000\nmin_rps = 1\nmax_failures = 0\n")
    done = subprocess.run([sys.executable, "-m", "tritonops.serving.loadgate", "--url", http_url, "--users", "4",
                           "--duration", "5s", "--target", "lenient", "--thresholds", str(thresholds),
                           "--report-dir", str(tmp_path), "--metrics-url", metrics_url],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout, done.stdout


def test_prometheus_scrapes_the_gateway(stack):
    def gateway_up():
        return [t for t in prometheus(stack, "targets")["activeTargets"]
                if t["labels"]["job"] == "gateway" and t["health"] == "up"]

    target = wait_for("an `up` Prometheus target for job gateway", gateway_up)[0]
    assert target["scrapeUrl"] == f"http://gateway:{stack.env['GATEWAY_STATS_PORT']}/metrics"
    series = wait_for("haproxy_backend_active_servers for triton_http",
                      lambda: prometheus(stack, "query", query='haproxy_backend_active_servers{proxy="triton_http"}')["result"])
    assert series[0]["value"][1] == "1"


def test_killed_server_comes_back_by_restart_policy(stack, docker_client):
    container = triton_container(stack, docker_client)
    restarts = container.attrs["RestartCount"]
    find = ("import os\nfor p in os.listdir('/proc'):\n"
            "    if p.isdigit() and open(f'/proc/{p}/comm').read().strip() == 'tritonserver': print(p)")
    pids = container.exec_run(["python3", "-c", find]).output.decode().split()
    assert len(pids) == 1, f"tritonserver processes in the container: {pids}"
    container.exec_run(["python3", "-c", f"import os, signal; os.kill({pids[0]}, signal.SIGKILL)"])

    def restarted():
        container.reload()
        return container.attrs["RestartCount"] > restarts and container.attrs["State"]["Running"]

    wait_for("the restart policy restarting the container", restarted, timeout=60, every=1)
    stack.wait_healthy(timeout=120)
    http_url, grpc_url, _ = urls(stack)

    def answers():  # the gateway takes it back after two passing checks (rise 2, inter 1 s)
        try:
            smoke.run(http_url, grpc_url, out=io.StringIO())
            return True
        except smoke.SmokeFailure as exc:
            return str(exc) or "failed"

    assert wait_for("the seed request answered through the gateway", lambda: answers() is True, timeout=30, every=1)


def test_down_keeps_the_monitoring_history_and_volumes_removes_it(stack, docker_client):
    """`make down` keeps the named volumes: a Prometheus started again still has the samples scraped
    before the down. `make down VOLUMES=1` then leaves nothing of the project."""
    label = {"label": f"com.docker.compose.project={stack.project}"}
    scraped = wait_for("a scraped sample of up{job=\"gateway\"}",
                       lambda: prometheus(stack, "query", query='up{job="gateway"}')["result"])
    before = float(scraped[0]["value"][0])
    stack.down()
    assert docker_client.containers.list(all=True, filters=label) == []
    kept = {v.name for v in docker_client.volumes.list(filters=label)}
    # compose v1 creates every named volume of the file, v2 those of the services it started
    assert f"{stack.project}_prometheus-data" in kept <= {f"{stack.project}_{v}" for v in ("prometheus-data", "grafana-data")}, kept
    stack.up(["prometheus"])
    span = f"{time.time() - before + 60:.0f}s"
    history = wait_for("the samples from before the down", lambda: prometheus(
        stack, "query", query=f'min_over_time(timestamp(up{{job="gateway"}})[{span}:])')["result"])
    assert float(history[0]["value"][1]) <= before, history

    stack.down(volumes=True)
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.networks.list(filters=label) == []
    assert docker_client.volumes.list(filters=label) == []
    for key in ("HOST_HTTP_PORT", "HOST_GRPC_PORT", "HOST_METRICS_PORT", "HOST_PROMETHEUS_PORT"):
        check_port_free(stack.env["BIND_ADDRESS"], int(stack.env[key]), key)  # raises if still bound
    assert BASE_FILE.exists()  # compose files untouched by the run
