"""Health means answers (docs/health.md): faults injected into a running compose stack under load.

One stack (triton + gateway, compose/compose.yaml unmodified) takes three drills in turn; each
leaves it healthy for the next. While a drill runs, client threads send the seed request through
the gateway and check every answer against the torch reference, and a sampler reads `docker
inspect` (state, health) together with one inference sent straight to the container. Each drill
prints and asserts (assert_bounded) that the fault bit, the failed requests, the outage, the time
from the fault to the first correct answer through the gateway and to the container's being healthy
again, and that health never said "healthy" for longer than HEALTHY_WHILE_FAILING_MAX_S while the
container was failing inferences.

    .venv/bin/python -m pytest -s tests/docker/test_healing.py   # -s shows the figures
"""
from __future__ import annotations

import datetime
import functools
import http.client
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import psutil
import pytest
import yaml

from tritonops import settings
from tritonops.models import linear
from tritonops.stack import compose
from tritonops.stack.images import IMAGES

import stubkill
from stacks import start_stack, wait_for

HEALTHCHECK = yaml.safe_load(compose.BASE_FILE.read_text())["services"]["triton"]["healthcheck"]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, f"compose healthcheck duration {value!r}: expected whole seconds like 5s"
    return float(match.group(1))


CHECK_INTERVAL_S, CHECK_TIMEOUT_S = seconds(HEALTHCHECK["interval"]), seconds(HEALTHCHECK["timeout"])
SAMPLE_EVERY_S = 0.5
SAMPLE_PROBE_TIMEOUT_S = 1.0
# The longest Docker may keep saying "healthy" once the container fails inferences: with retries 1,
# the next check starts at most `interval` after the previous one ended and fails within `timeout`
# (the check's own timeout, TRITON_LIVENESS_TIMEOUT_SECS, is shorter). Slack: the previous check's own
# run, which could still pass just as the fault lands (~0.2 s here), and this sampler's period plus
# its probe's timeout (a sample's inference is judged when it started).
HEALTHY_WHILE_FAILING_MAX_S = CHECK_INTERVAL_S + CHECK_TIMEOUT_S + SAMPLE_EVERY_S + SAMPLE_PROBE_TIMEOUT_S + 1.0
# Recovery bounds (issue 10): a model that stopped answering, and a crashed container.
MODEL_FAULT_RECOVERY_S = 60
# The embed pipeline's restart loads three more Python stubs (torch, transformers, MiniLM): 31.8 s on a
# quiet box, 85.0 s at load ~10 (a testhost suite and other stacks running). Bound: ~2x the worst seen.
ENSEMBLE_FAULT_RECOVERY_S = 170
CRASH_RECOVERY_S = 15
# Figures every drill asserts (docs/failure-modes.md has the runs). The first failure came 0.0-1.2 s
# after the fault; within the stub's 5 s pause shows the fault itself bit, not its aftermath.
FAULT_BITES_WITHIN_S = 5.0
# Lost requests: at most 4 303 in one drill (stub SIGKILL, box at load 10-14); 2.1x that. Below the ~12 000 a
# whole minute's outage loses at the offered rate (one reason: the gateway answers 503 at once).
LOST_MAX = 9000
# Failures that were not the gateway's 503 (Triton's 500s before its check took the replica out, connections
# cut by the crash): 0-12 per drill; a gateway that kept a broken Triton in rotation fails thousands.
REACHED_TRITON_MAX = 40
CLIENTS = 4
PACE_S = 0.02  # between one client's requests: ~100-200 requests/s in all, and a bounded failure count
SEED_BODY = json.dumps(linear.seed_request_json()).encode()


@functools.cache
def expected_y() -> np.ndarray:
    return linear.reference(linear.SEED_X)  # torch: imported only where a drill runs


# --- files: the healthcheck is the same everywhere and fits the supervisor's knobs (no engine) ---

def dockerfile_healthcheck() -> dict[str, str]:
    text = (IMAGES / "Dockerfile").read_text()
    match = re.search(r"^HEALTHCHECK (.*?)\s+CMD (\[.*?\])$", text, re.M | re.S)
    assert match, "images/Dockerfile has no HEALTHCHECK ... CMD [...]"
    flags = dict(re.findall(r"--([a-z-]+)=(\S+)", match.group(1)))
    return {**flags, "test": json.loads(match.group(2))}


def test_image_and_compose_healthchecks_send_the_same_inference_check():
    image = dockerfile_healthcheck()
    assert HEALTHCHECK["test"] == ["CMD", *image["test"]]
    assert image["test"][-2:] == ["/opt/tritonops/bin/tritonops-supervisor", "check"]
    for key in ("interval", "timeout", "start-period", "retries"):
        assert str(HEALTHCHECK[key.replace("-", "_")]) == image[key], (key, HEALTHCHECK, image)
    assert HEALTHCHECK["retries"] == 1  # HEALTHY_WHILE_FAILING_MAX_S assumes one failed check is unhealthy
    # Docker must not cut the check short: its timeout leaves the check's own timeout + Python's start.
    assert CHECK_TIMEOUT_S >= float(settings.get("TRITON_LIVENESS_TIMEOUT_SECS")) + 1


def test_liveness_knobs_restart_a_hung_model_well_within_a_minute():
    """The supervisor's worst case (every check hangs to its timeout) plus its SIGTERM-to-SIGKILL grace,
    restart and model load (~10 s here) leave room under MODEL_FAULT_RECOVERY_S."""
    interval = float(settings.get("TRITON_LIVENESS_INTERVAL_SECS"))
    timeout = float(settings.get("TRITON_LIVENESS_TIMEOUT_SECS"))
    failures = int(settings.get("TRITON_LIVENESS_FAILURES"))
    assert failures >= 2, "one failed inference should not restart a server"
    worst = interval + failures * timeout + (failures - 1) * interval + 5  # supervisor.KILL_AFTER_S
    assert worst <= MODEL_FAULT_RECOVERY_S / 2, worst


def test_the_knobs_reach_the_image_and_compose():
    text = (IMAGES / "Dockerfile").read_text()
    triton = yaml.safe_load(compose.BASE_FILE.read_text())["services"]["triton"]
    for knob in ("TRITON_LIVENESS_INTERVAL_SECS", "TRITON_LIVENESS_TIMEOUT_SECS", "TRITON_LIVENESS_FAILURES"):
        assert f"ARG {knob}\n" in text and f"{knob}=${{{knob}}}" in text, knob
        assert triton["environment"][knob] == f"${{{knob}}}"
    # The checks come from the mounted repository's descriptors, not from a model name.
    assert "TRITON_LIVENESS_MODEL" not in triton["environment"] and "TRITON_LIVENESS_MODEL" not in text
    assert "MODEL_REPOSITORY=/models" in text and "target: /models" in compose.BASE_FILE.read_text()


# --- the drills ---

@dataclass
class Answer:
    start: float
    end: float
    ok: bool
    detail: str = ""


class Load:
    """CLIENTS threads sending the seed request through the gateway, every answer checked."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def client(self) -> None:
        conn = None
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                conn = conn or http.client.HTTPConnection(self.host, self.port, timeout=10)
                conn.request("POST", f"/v2/models/{linear.MODEL}/infer", SEED_BODY, {"Content-Type": "application/json"})
                reply = conn.getresponse()
                body = reply.read()
                detail = check_reply(reply.status, body)
            except (OSError, http.client.HTTPException) as exc:
                detail = f"{type(exc).__name__}: {exc}"
                if conn:
                    conn.close()
                conn = None
            self.answers.append(Answer(start, time.monotonic(), detail is None, detail or ""))
            time.sleep(PACE_S)
        if conn:
            conn.close()

    def since(self, t: float) -> list[Answer]:
        return sorted((a for a in list(self.answers) if a.end >= t), key=lambda a: a.end)


def check_reply(status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status} {body[:120]!r}"
    try:
        out = {o["name"]: o for o in json.loads(body)["outputs"]}[linear.OUTPUT]
        y = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"bad answer ({exc}): {body[:120]!r}"
    want = expected_y()
    if y.shape != want.shape or not np.allclose(y, want, rtol=linear.RTOL, atol=linear.ATOL):
        return f"wrong answer {y.ravel().tolist()}"
    return None


@dataclass
class Sample:
    t: float
    status: str
    health: str
    restarts: int
    answers: bool  # an inference sent straight to the container, now
    detail: str = ""


class Sampler:
    """docker inspect (state, health) and one direct inference, every SAMPLE_EVERY_S."""

    def __init__(self, container, port: int):
        self.container, self.port = container, port
        self.samples: list[Sample] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            self.container.reload()
            state = self.container.attrs["State"]
            ips = [n.get("IPAddress") for n in self.container.attrs["NetworkSettings"]["Networks"].values()]
            detail = "no address" if not any(ips) else None
            if detail is None:
                try:
                    conn = http.client.HTTPConnection(next(ip for ip in ips if ip), self.port, timeout=SAMPLE_PROBE_TIMEOUT_S)
                    conn.request("POST", f"/v2/models/{linear.MODEL}/infer", SEED_BODY, {"Content-Type": "application/json"})
                    reply = conn.getresponse()
                    detail = check_reply(reply.status, reply.read())
                    conn.close()
                except (OSError, http.client.HTTPException) as exc:
                    detail = f"{type(exc).__name__}: {exc}"
            self.samples.append(Sample(t, state["Status"], state.get("Health", {}).get("Status", ""),
                                       self.container.attrs["RestartCount"], detail is None, detail or ""))
            self.stop.wait(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - t)))

    def longest_healthy_while_failing(self) -> float:
        """The longest Docker said healthy while every direct inference since some moment failed (s)."""
        longest, failing_since = 0.0, None
        for s in self.samples:
            failing_since = None if s.answers else (s.t if failing_since is None else failing_since)
            if failing_since is not None and s.status == "running" and s.health == "healthy":
                longest = max(longest, s.t - failing_since)
        return longest

    def healthy_while_failing(self) -> list[tuple[float, Sample]]:
        """(seconds failing, sample) for each sample that says healthy after the container has failed
        every direct inference for longer than HEALTHY_WHILE_FAILING_MAX_S."""
        found, failing_since = [], None
        for s in self.samples:
            if s.answers:
                failing_since = None
                continue
            failing_since = s.t if failing_since is None else failing_since
            if s.status == "running" and s.health == "healthy" and s.t - failing_since > HEALTHY_WHILE_FAILING_MAX_S:
                found.append((s.t - failing_since, s))
        return found


@dataclass
class Figures:
    name: str
    failed: int = 0
    total: int = 0
    not_503: int = 0  # failed requests the gateway did not answer 503 itself
    first_failure_s: float | None = None
    failing_s: float = 0.0  # from the first failed request's start to the last one's answer
    answers_again_s: float | None = None  # first correct answer through the gateway after the last failure
    healthy_again_s: float | None = None  # container healthy again after its last non-healthy sample
    restarts: int = 0
    health_lag: list = field(default_factory=list)
    health_lag_max_s: float = 0.0
    errors: dict = field(default_factory=dict)
    logs: str = ""  # the container's log since the fault

    def line(self) -> str:
        fmt = lambda v: "-" if v is None else f"{v:.1f} s"  # noqa: E731
        kinds = ", ".join(f"{n}x {e}" for e, n in sorted(self.errors.items(), key=lambda kv: -kv[1])[:3])
        return (f"{self.name}: {self.failed} of {self.total} requests failed, {self.not_503} not the gateway's 503 "
                f"(first {fmt(self.first_failure_s)} after the fault, for {self.failing_s:.1f} s); correct answers again after {fmt(self.answers_again_s)}, healthy again after "
                f"{fmt(self.healthy_again_s)}; restarts +{self.restarts}; health said healthy while failing for at most "
                f"{self.health_lag_max_s:.1f} s, samples over the {HEALTHY_WHILE_FAILING_MAX_S:.1f} s bound: "
                f"{len(self.health_lag)}; errors: {kinds or 'none'}")


def run_drill(stack, triton, name: str, fault, settle_s: float = 3.0) -> Figures:
    """Baseline under load, fault, then wait for correct answers through the gateway for settle_s in a row
    and the container running and healthy; returns the figures, printed."""
    env = stack.env
    triton.reload()
    restarts = triton.attrs["RestartCount"]
    assert triton.attrs["State"]["Health"]["Status"] == "healthy", triton.attrs["State"]
    with Load(env["BIND_ADDRESS"], int(env["HOST_HTTP_PORT"])) as load, Sampler(triton, int(env["HTTP_PORT"])) as sampler:
        begin = time.monotonic()
        wait_for("a correct answer under load before the fault", lambda: any(a.ok for a in load.answers), 30, every=0.5)
        time.sleep(1)
        baseline = [a for a in load.answers if not a.ok]
        assert not baseline, f"{name}: requests failed before the fault: {baseline[:3]}"
        fault_at = time.monotonic()
        since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
        fault(triton)

        def recovered():
            answers = load.since(fault_at)
            if not answers or time.monotonic() - fault_at < settle_s:
                return False
            failures = [a for a in answers if not a.ok]
            last_failure = failures[-1].end if failures else fault_at
            settled = [a for a in answers if a.end > last_failure]
            samples = sampler.samples[-1:] if sampler.samples else []
            healthy = bool(samples) and samples[0].status == "running" and samples[0].health == "healthy"
            return (healthy and settled and all(a.ok for a in settled)
                    and settled[-1].end - settled[0].end >= settle_s)

        wait_for(f"{name}: correct answers for {settle_s:g} s in a row and a healthy container", recovered,
                 timeout=MODEL_FAULT_RECOVERY_S + 60, every=0.5)
    answers = load.since(fault_at)
    failures = [a for a in answers if not a.ok]
    figures = Figures(name, failed=len(failures), total=len(answers))
    if failures:
        figures.first_failure_s = failures[0].end - fault_at
        figures.failing_s = failures[-1].end - failures[0].start
        figures.answers_again_s = next(a.end for a in answers if a.ok and a.end > failures[-1].end) - fault_at
        figures.not_503 = sum(1 for a in failures if not a.detail.startswith("HTTP 503 "))
        for a in failures:
            kind = re.sub(r"\d+\.\d+", "N", a.detail[:60])
            figures.errors[kind] = figures.errors.get(kind, 0) + 1
    else:
        figures.answers_again_s = 0.0
    after = [s for s in sampler.samples if s.t >= fault_at]
    not_healthy = [s for s in after if not (s.status == "running" and s.health == "healthy")]
    if not_healthy:
        figures.healthy_again_s = next(s.t for s in after if s.t > not_healthy[-1].t) - fault_at
    else:
        figures.healthy_again_s = 0.0
    triton.reload()
    figures.restarts = triton.attrs["RestartCount"] - restarts
    figures.health_lag = sampler.healthy_while_failing()
    figures.health_lag_max_s = sampler.longest_healthy_while_failing()
    figures.logs = triton.logs(since=since).decode(errors="replace")
    said = "\n".join(f"  {line}" for line in figures.logs.splitlines() if "tritonops-supervisor:" in line)
    print(f"\n{figures.line()} (load ran {time.monotonic() - begin:.0f} s)\n{said}", file=sys.stderr)
    return figures


def assert_bounded(figures: Figures, recovery_s: float) -> None:
    """The fault bit, and what it cost stays within the bounds: lost requests, outage, time to answers again
    and to healthy again."""
    assert figures.failed > 0, f"{figures.name}: no request failed: the fault had no effect"
    assert figures.first_failure_s <= FAULT_BITES_WITHIN_S, figures.line()
    assert figures.failed <= LOST_MAX, figures.line()
    assert figures.not_503 <= REACHED_TRITON_MAX, figures.line()
    assert figures.failing_s <= recovery_s, figures.line()
    assert figures.answers_again_s <= recovery_s, figures.line()
    assert figures.healthy_again_s <= MODEL_FAULT_RECOVERY_S, figures.line()


def assert_healthy_and_answering(stack, triton, figures: Figures) -> None:
    """No drill may end with health saying healthy while inferences fail: both, now."""
    assert not figures.health_lag, f"{figures.name}: healthy while failing: {figures.health_lag[:3]}"
    triton.reload()
    assert triton.attrs["State"]["Status"] == "running" and triton.attrs["State"]["Health"]["Status"] == "healthy"
    conn = http.client.HTTPConnection(stack.env["BIND_ADDRESS"], int(stack.env["HOST_HTTP_PORT"]), timeout=10)
    conn.request("POST", f"/v2/models/{linear.MODEL}/infer", SEED_BODY, {"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert check_reply(reply.status, reply.read()) is None


@pytest.fixture(scope="module")
def healing_stack(built_images, tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("healing"))
    try:
        yield stack
    finally:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)


@pytest.fixture
def triton(healing_stack, docker_client):
    ids = healing_stack.container_ids("triton")
    assert len(ids) == 1, ids
    container = docker_client.containers.get(ids[0])
    healing_stack.wait_healthy(timeout=120)  # a failed drill before this one may have left it restarting
    return container


@pytest.mark.docker
def test_a_killed_model_stub_is_replaced(healing_stack, triton):
    """Triton 2.51 stays up and READY with a SIGKILLed stub and answers every inference 500 (TESTBED §7).
    The supervisor sees the failing inferences, stops tritonserver and exits; the restart policy
    brings the container back, and its log says why."""
    def kill_stub(container):
        stubs = stubkill.stub_processes(container)
        assert stubs, "no triton_python_backend_stub in the container"
        os.kill(stubs[0].pid, signal.SIGKILL)

    figures = run_drill(healing_stack, triton, "stub SIGKILL", kill_stub)
    assert_bounded(figures, MODEL_FAULT_RECOVERY_S)
    assert figures.restarts == 1, figures.line()
    why = [line for line in figures.logs.splitlines() if "tritonops-supervisor: NOT ANSWERING" in line]
    assert why and "is not healthy" in why[0], figures.logs[-3000:]
    assert_healthy_and_answering(healing_stack, triton, figures)


@pytest.mark.docker
def test_a_stopped_and_resumed_model_stub_recovers(healing_stack, triton):
    """SIGSTOP for 5 s, then SIGCONT: inferences fail meanwhile and tritonserver aborts when the stub
    resumes (TESTBED §7). Whichever comes first (the abort, the supervisor's failed checks), the
    container is back within a minute and its log says what happened."""
    def pause_stub(container):
        stub = stubkill.stub_processes(container)[0]
        stub.suspend()
        time.sleep(5)
        try:
            stub.resume()
        except psutil.NoSuchProcess:
            pass

    figures = run_drill(healing_stack, triton, "stub SIGSTOP 5 s + SIGCONT", pause_stub)
    assert_bounded(figures, MODEL_FAULT_RECOVERY_S)  # first failure within the pause: SIGSTOP itself bit
    if figures.restarts:
        said = [line for line in figures.logs.splitlines()
                if "tritonops-supervisor: NOT ANSWERING" in line or "tritonops-supervisor: tritonserver exited by itself" in line]
        assert said, figures.logs[-3000:]
    assert_healthy_and_answering(healing_stack, triton, figures)


@pytest.mark.docker
def test_a_crashed_container_serves_again_within_15_s(healing_stack, triton):
    """SIGKILL of the container's main process (tini), as an OOM kill or a crash would: the restart policy
    starts it again. (`docker kill` is not this: the engine takes it as an explicit stop and, like
    `docker stop`, does not restart an unless-stopped container; seen on Docker 20.10.)"""
    def crash(container):
        container.reload()
        os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)

    figures = run_drill(healing_stack, triton, "container main process SIGKILL", crash)
    assert figures.restarts == 1, figures.line()
    assert_bounded(figures, CRASH_RECOVERY_S)
    assert_healthy_and_answering(healing_stack, triton, figures)


@pytest.fixture(scope="module")
def embed_stack(built_images, tmp_path_factory):
    """The shipped repository, as `make up` mounts it: linear beside the embed ensemble."""
    stack = start_stack(tmp_path_factory.mktemp("healing-embed"), embed=True)
    try:
        yield stack
    finally:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)


@pytest.mark.docker
def test_a_killed_ensemble_step_is_healed_through_its_ensemble(embed_stack, docker_client):
    """SIGKILL of the `encoder` stub, a step only the `embed` ensemble reaches: embed answers 500 while Triton
    stays READY. The supervisor probes every health-checked model (embed's descriptor sample included), so it
    restarts the container and embed answers correctly again within ENSEMBLE_FAULT_RECOVERY_S (before issue 25
    only linear was probed: embed failed for 120 s and more while Docker said healthy)."""
    import embedclient
    from tritonops.models import embedding

    (container_id,) = embed_stack.container_ids("triton")
    triton = docker_client.containers.get(container_id)
    embed_stack.wait_healthy(timeout=180)
    url = f"{embed_stack.env['BIND_ADDRESS']}:{embed_stack.env['HOST_HTTP_PORT']}"
    texts = embedding.SENTENCES[:1]
    want = embedding.reference(texts)

    def correct() -> bool:
        try:
            return embedding.check_output(texts, embedclient.infer_http(url, texts), want) is None
        except Exception:  # noqa: BLE001 -- a 500, a 503 or a reset while it restarts: not correct
            return False

    assert correct(), "embed did not answer correctly before the fault"
    healed = stubkill.kill_stub_and_wait(triton, embedding.ENCODER, correct, ENSEMBLE_FAULT_RECOVERY_S + 30)
    print(f"\n{healed}\n" + "\n".join(f"  {l}" for l in healed.supervisor), file=sys.stderr)
    assert healed.first_failure is not None and healed.first_failure <= FAULT_BITES_WITHIN_S, healed
    assert healed.answers_again is not None and healed.answers_again <= ENSEMBLE_FAULT_RECOVERY_S, healed
    assert healed.restarts == 1, healed
    # The supervisor named the model in a failed check (later checks may time out instead) and acted.
    assert any("failed: embed: " in line for line in healed.supervisor), healed.supervisor
    assert any("NOT ANSWERING" in line for line in healed.supervisor), healed.supervisor
