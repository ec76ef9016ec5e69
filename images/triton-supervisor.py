#!/usr/bin/env python3
"""Health means answers: the Triton container's liveness, by real inference (README: Health).

Installed in the project image as /opt/tritonops/bin/tritonops-supervisor (images/Dockerfile); the
python3 standard library only (Debian's 3.11 in the CPU base, Ubuntu's 3.12 in NGC's).

    tritonops-supervisor run tritonserver --model-repository=...   the image's CMD ends with this
    tritonops-supervisor check                                      the image's HEALTHCHECK

`check` sends one sample of every health-checked model of the repository (MODEL_REPOSITORY, /models:
each model's tritonops.json, its first sample; ensemble steps are checked through their ensemble) to
127.0.0.1:TRITON_HTTP_PORT and exits 0 only when every answer is an HTTP 200 whose outputs are the
model's (metadata), of the right shape, all finite numbers, and equal to the sample's expected outputs
within their tolerances where it has them. A repository without samples is checked by /v2/health/ready.

`run` runs the command as its child (tini stays PID 1 with compose's `init: true`), forwards
SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to it and exits with its exit code (128+N for a
signal N, as a shell would). Once the model has answered correctly, it repeats that check every
TRITON_LIVENESS_INTERVAL_SECS (timeout TRITON_LIVENESS_TIMEOUT_SECS); after TRITON_LIVENESS_FAILURES
failures in a row it logs why, stops tritonserver (SIGTERM, SIGKILL after KILL_AFTER_S) and exits
EXIT_NOT_ANSWERING, so that the engine's restart policy (restart: unless-stopped) replaces the
process. Measured on Triton 2.51: a SIGKILLed model stub leaves tritonserver up and READY while
every inference answers 500; only an inference tells. A child that exits without being asked is
logged too (a stub stopped and resumed makes tritonserver abort). TRITON_LIVENESS_FAILURES=0 turns
the restarts off (`check` still works).

The command line is never logged: it carries the admin key (--http-restricted-api).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

PREFIX = "tritonops-supervisor:"
# Exit code when the server stopped answering (tritonserver's own codes and 128+N pass through).
EXIT_NOT_ANSWERING = 70
# Grace between SIGTERM and SIGKILL for a server that failed its liveness checks. Not the exit
# timeout (TRITON_EXIT_TIMEOUT_SECS, 30 s): measured, a tritonserver whose stub was killed waits all
# of it (the model never unloads), and a server that answers nothing correctly has nothing to drain.
KILL_AFTER_S = 5.0
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)  # tritonserver exits on these: no restart wanted
WAITED = {*FORWARDED, signal.SIGCHLD}  # blocked, and taken in the main loop (run)
ANSWER_CHARS = 300  # of a failing answer, in the log
# tritonops.models.descriptor's file name and default tolerances (stdlib only here; tests/test_supervisor.py keeps them equal).
DESCRIPTOR = "tritonops.json"
DEFAULT_RTOL, DEFAULT_ATOL = 1e-5, 1e-5


def log(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


class Settings:
    """The knobs, from the environment the image (ENV, from versions.env) and compose set."""

    def __init__(self, environ=os.environ):
        self.port = int(environ.get("TRITON_HTTP_PORT", "8000"))
        self.repository = environ.get("MODEL_REPOSITORY", "")
        self.interval = float(environ.get("TRITON_LIVENESS_INTERVAL_SECS", "2"))
        self.timeout = float(environ.get("TRITON_LIVENESS_TIMEOUT_SECS", "3"))
        self.failures = int(environ.get("TRITON_LIVENESS_FAILURES", "3"))
        if self.interval <= 0 or self.timeout <= 0 or self.failures < 0:
            raise ValueError("TRITON_LIVENESS_INTERVAL_SECS and _TIMEOUT_SECS must be > 0, _FAILURES >= 0")
        self.probes = probes(self.repository) if self.repository else []

    def describe(self) -> str:
        what = (f"an inference of {', '.join(p.model for p in self.probes)}" if self.probes
                else f"/v2/health/ready (no model with samples in {self.repository or 'MODEL_REPOSITORY (unset)'})")
        return f"{what} every {self.interval:g} s, timeout {self.timeout:g} s"


class Probe:
    """One model's check: the first sample of its descriptor as a KServe v2 JSON body, and the expected
    outputs (name -> (values, rtol, atol)) where the sample has them."""

    def __init__(self, model: str, sample: dict):
        self.model = model
        self.request = {"inputs": [{"name": name, "datatype": t["datatype"], "shape": t["shape"], "data": t["data"]}
                                   for name, t in sample["inputs"].items()]}
        self.body = json.dumps(self.request, separators=(",", ":")).encode()
        self.expected = {name: (t["data"], t.get("rtol", DEFAULT_RTOL), t.get("atol", DEFAULT_ATOL))
                         for name, t in (sample.get("outputs") or {}).items()}


def probes(repository: str) -> list[Probe]:
    """The health-checked models of a repository, by name. A descriptor that cannot be read is a broken
    deployment (tritonops validate refuses it before any deploy): fail loudly."""
    found = []
    for model in sorted(os.listdir(repository)):
        path = os.path.join(repository, model, DESCRIPTOR)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            descriptor = json.load(f)
        if descriptor.get("ensemble_step_of") or not descriptor.get("health_check", True) or not descriptor.get("samples"):
            continue
        found.append(Probe(model, descriptor["samples"][0]))
    return found


def _flat(values) -> list:
    if isinstance(values, list):
        return [v for item in values for v in _flat(item)]
    return [values]


def _http(url: str, deadline: float, body: bytes | None = None) -> tuple[int, bytes]:
    """(status, body) of one request; raises TimeoutError, OSError (no answer)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=left) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_answer(request: dict, metadata: dict, answer: dict) -> str | None:
    """None when answer is a correct-looking reply to request for a model with this metadata."""
    batch = None
    inputs = request.get("inputs") or []
    if inputs and inputs[0].get("shape"):
        batch = inputs[0]["shape"][0]
    outputs = {o.get("name"): o for o in answer.get("outputs") or []}
    wanted = metadata.get("outputs") or []
    if not wanted or not outputs:
        return f"no outputs (model metadata lists {[o.get('name') for o in wanted]})"
    for spec in wanted:
        name = spec.get("name")
        out = outputs.get(name)
        if out is None:
            return f"output {name!r} missing (got {sorted(map(str, outputs))})"
        shape, dims = out.get("shape"), spec.get("shape") or []
        if not isinstance(shape, list) or len(shape) != len(dims) or any(
                d != -1 and s != d for s, d in zip(shape, dims)):
            return f"output {name!r} has shape {shape}, the model says {dims}"
        if batch is not None and dims and dims[0] == -1 and shape[0] != batch:
            return f"output {name!r} has shape {shape} for a batch of {batch}"
        data = _flat(out.get("data"))
        if len(data) != math.prod(shape):
            return f"output {name!r} has {len(data)} values for shape {shape}"
        if spec.get("datatype") != "BYTES":
            bad = [v for v in data if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
            if bad:
                return f"output {name!r} has values that are not finite numbers: {bad[:3]}"
    return None


def expected_problem(probe: Probe, answer: dict) -> str | None:
    """None when every expected output matches (numbers: |got - want| <= atol + rtol * |want|, as numpy's
    isclose; strings and booleans: equal)."""
    outputs = {o.get("name"): _flat(o.get("data")) for o in answer.get("outputs") or []}
    for name, (want, rtol, atol) in probe.expected.items():
        got = outputs.get(name)
        if got is None or len(got) != len(want):
            return f"output {name!r}: {0 if got is None else len(got)} values, the sample expects {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (g, w))
            if not (abs(g - w) <= atol + rtol * abs(w) if numbers else g == w):
                return f"output {name!r}[{i}] = {g!r}, the sample expects {w!r} (rtol {rtol:g}, atol {atol:g})"
    return None


def check_probe(base: str, probe: Probe, deadline: float) -> str | None:
    status, body = _http(f"{base}/models/{probe.model}/infer", deadline, probe.body)
    if status != 200:
        return f"HTTP {status} {body[:ANSWER_CHARS].decode(errors='replace').strip()}"
    answer = json.loads(body)
    status, meta = _http(f"{base}/models/{probe.model}", deadline)
    if status != 200:
        return f"model metadata: HTTP {status} {meta[:ANSWER_CHARS].decode(errors='replace').strip()}"
    return check_answer(probe.request, json.loads(meta), answer) or expected_problem(probe, answer)


def check(cfg: Settings) -> str | None:
    """One liveness check within cfg.timeout: None when every model answered correctly, else why not."""
    base = f"http://127.0.0.1:{cfg.port}/v2"
    deadline = time.monotonic() + cfg.timeout
    asked = "/v2/health/ready"  # what the failure is about: the operator's first question
    try:
        if not cfg.probes:
            status, body = _http(f"{base}/health/ready", deadline)
            return None if status == 200 else f"{asked} answered HTTP {status}"
        for probe in cfg.probes:
            asked = probe.model
            why = check_probe(base, probe, deadline)
            if why:
                return f"{asked}: {why}"
        return None
    except TimeoutError:
        return f"{asked}: no answer within {cfg.timeout:g} s"
    except (OSError, ValueError, AttributeError, TypeError) as exc:  # refused, reset, not JSON, odd JSON
        return f"{asked}: {type(exc).__name__}: {str(exc)[:ANSWER_CHARS]}"


def exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def run(argv: list[str], cfg: Settings) -> int:
    started = time.monotonic()
    # Signals are taken synchronously (sigtimedwait) rather than by Python handlers: no handler can run in the
    # middle of a check or a garbage collection, and one that arrives before the loop waits, pending. The
    # child starts with them unblocked; a process group of its own, so a terminal's Ctrl-C reaches it once.
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
    child = subprocess.Popen(argv, process_group=0,
                             preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, WAITED))
    stopping: list[int] = []

    def wait_for_signals(timeout: float) -> int | None:
        """Forward what arrives within timeout; the child's exit code once it has exited, else None."""
        deadline = time.monotonic() + timeout
        while True:
            got = signal.sigtimedwait(WAITED, max(0.0, deadline - time.monotonic()))
            if got is None or got.si_signo == signal.SIGCHLD:
                if child.poll() is not None or got is None:
                    return child.returncode
                continue
            if got.si_signo in STOPPING:
                stopping.append(got.si_signo)
            if child.poll() is None:
                os.kill(child.pid, got.si_signo)

    log(f"started {os.path.basename(argv[0])} (pid {child.pid}); liveness: {cfg.describe()}, "
        + (f"restart after {cfg.failures} failures in a row" if cfg.failures else "restarts off (TRITON_LIVENESS_FAILURES=0)"))

    answered = False
    failures = 0
    next_check = time.monotonic() + cfg.interval
    while True:
        returncode = wait_for_signals(next_check - time.monotonic())
        if returncode is not None:
            break
        if stopping:
            next_check = time.monotonic() + cfg.interval
            continue
        why = check(cfg)
        next_check = time.monotonic() + cfg.interval  # from the end of one check to the start of the next
        if why is None:
            if not answered:
                log(f"first correct answer {time.monotonic() - started:.1f} s after start; checking from now on")
            elif failures:
                log(f"answers correctly again after {failures} failed check(s)")
            answered, failures = True, 0
            continue
        if not answered or stopping:
            continue  # still loading: the healthcheck's start period covers this
        failures += 1
        if not cfg.failures or failures < cfg.failures:
            log(f"liveness check {failures}/{cfg.failures or '-'} failed: {why}")
            continue
        log(f"NOT ANSWERING: {cfg.failures} liveness checks in a row failed (every {cfg.interval:g} s, timeout "
            f"{cfg.timeout:g} s), last: {why}; stopping tritonserver (SIGTERM, SIGKILL after {KILL_AFTER_S:g} s) "
            f"and exiting {EXIT_NOT_ANSWERING} so that the restart policy replaces it")
        child.send_signal(signal.SIGTERM)
        returncode = wait_for_signals(KILL_AFTER_S)
        if returncode is None:
            child.kill()
            returncode = child.wait()
        log(f"tritonserver stopped ({describe_exit(returncode)}); exiting {EXIT_NOT_ANSWERING}")
        return EXIT_NOT_ANSWERING
    if stopping:
        log(f"tritonserver stopped on {signal.Signals(stopping[0]).name} ({describe_exit(returncode)})")
    else:
        log(f"tritonserver exited by itself ({describe_exit(returncode)}, {time.monotonic() - started:.0f} s after "
            f"start); exiting {exit_code(returncode)} so that the restart policy replaces it")
    return exit_code(returncode)


def main(argv: list[str]) -> int:
    usage = "usage: tritonops-supervisor check | tritonops-supervisor run COMMAND [ARG...]"
    if not argv or argv[0] not in ("check", "run") or (argv[0] == "run" and len(argv) < 2):
        print(usage, file=sys.stderr)
        return 2
    try:
        cfg = Settings()
    except (OSError, ValueError) as exc:
        print(f"{PREFIX} bad liveness settings: {exc}", file=sys.stderr)
        return 2
    if argv[0] == "check":
        why = check(cfg)
        print("ok" if why is None else f"not answering: {why}")  # docker inspect shows it (State.Health.Log)
        return 0 if why is None else 1
    code = run(argv[1:], cfg)
    # Exit without the interpreter's teardown: the child is reaped and everything is logged, so nothing is
    # left to clean up, and measured, that teardown could spin (in its final garbage collection, state R,
    # no Python frame) for a minute after a forwarded SIGTERM, until `docker stop` SIGKILLed the container.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
