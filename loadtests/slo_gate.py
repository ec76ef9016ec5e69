"""The SLO gate, as Locust event hooks: a Locust file that imports this module gates its own run.

    locust -f loadtests/linear.py --headless -u 16 -r 16 -t 30s -H http://127.0.0.1:8000 --slo local-cpu

--slo TABLE names a table of loadtests/thresholds.toml (or of --slo-file). The server's /metrics is
scraped when the test starts and when Locust quits; when Locust quits, its own figures
(environment.stats) are judged against the table and the verdict sets the process's exit code:
0 pass, 1 a check failed, 2 a bad thresholds file (then no user runs). Checks: a request completed;
no error in user code (a user that could not start); failed requests (client: wrong answers included; server: its failure counter) within max_failures;
p95 within p95_ms; throughput at least min_rps, or with --target-rps (open loop: every user paced
by constant_throughput) the achieved rate at least min_rate_share of the target.

Judged on the local or master runner only: workers run users and scrape nothing. --figures-file
writes Locust's final figures as JSON (read by tritonops.serving.loadgate.LocustRun.results), with or
without --slo.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from locust import constant_throughput, events
from locust.runners import STATE_RUNNING, STATE_SPAWNING, WorkerRunner

from tritonops.models import linear
from tritonops.serving import loadgate, metrics


# The model whose server-side counters are judged and reported: a Locust file for another model sets it
# (loadtests/embed.py), and STEP, a model whose executions show the dynamic batcher's work when MODEL's do
# not (an ensemble runs once per request: its steps batch). Read when the test starts and ends.
MODEL = linear.MODEL
STEP = ""
# A Locust file whose models carry their own SLO (loadtests/models.py) sets this: opts -> {model: slo of its
# tritonops.json}; `--slo descriptor` then judges against those (loadgate.descriptor_thresholds).
DESCRIPTOR_SLOS = None


class WrongAnswer(Exception):
    """A response that arrived but is not the model's answer (an HTTP error status, a wrong value).
    Its repr is its message, so Locust's failure tables and the verdict read "wrong answer: ..."."""

    def __repr__(self) -> str:
        return str(self)


@events.init_command_line_parser.add_listener
def _arguments(parser):
    group = parser.add_argument_group("SLO gate (loadtests/slo_gate.py)")
    group.add_argument("--slo", metavar="TABLE", default="",
                       help="judge the run against this table of the thresholds file; exit 1 if a check fails")
    group.add_argument("--slo-file", metavar="PATH", default=str(loadgate.THRESHOLDS), help="the thresholds file")
    group.add_argument("--slo-report", metavar="PATH", default="", help="with --slo: write the verdict (markdown) here")
    group.add_argument("--figures-file", metavar="PATH", default="",
                       help="write Locust's final figures (JSON) to this file, with or without --slo")
    group.add_argument("--metrics-url", default="",
                       help="Triton's /metrics (default: the -H host on the repo's metrics port)")
    group.add_argument("--target-rps", type=float, default=0,
                       help="open loop: requests a second for all users together (each user paced at "
                            "target/users); the gate then checks p95 at that rate and that the rate was reached")
    group.add_argument("--rate-per-user", type=float, default=0,
                       help="requests a second each user sends at most (a steady load beside other work); "
                            "0 (default): as fast as answers come")


@dataclass
class _Run:
    """What the hooks of this process gathered (one run per Locust process)."""

    limits: loadgate.Thresholds | None = None
    metrics_url: str = ""
    before: dict | None = None
    note: str = ""
    verdict: str = ""  # printed after Locust's own tables


RUN = _Run()


def _judging(environment) -> bool:
    opts = environment.parsed_options
    return (opts is not None and not isinstance(environment.runner, WorkerRunner)
            and bool(opts.slo or opts.figures_file))


@events.init.add_listener
def _load_thresholds(environment, **_kwargs):
    """A bad thresholds file, table or field stops Locust here, before any user starts."""
    opts = environment.parsed_options
    if opts is None or isinstance(environment.runner, WorkerRunner):
        return
    problem = ""
    if opts.target_rps < 0 or opts.rate_per_user < 0:
        problem = "--target-rps and --rate-per-user must be >= 0"
    elif opts.target_rps and opts.rate_per_user:
        problem = "--target-rps and --rate-per-user: give one of them"
    elif opts.slo:
        try:
            if opts.slo == loadgate.DESCRIPTOR_TARGET and DESCRIPTOR_SLOS is not None:
                RUN.limits = loadgate.descriptor_thresholds(DESCRIPTOR_SLOS(opts))
            else:
                RUN.limits = loadgate.load_thresholds(Path(opts.slo_file), opts.slo)
        except (loadgate.GateError, ValueError, OSError) as exc:
            problem = str(exc)
    if problem:
        sys.stderr.write(f"error: {problem}\n")
        sys.exit(2)
    if RUN.limits is not None:
        RUN.metrics_url = opts.metrics_url or metrics.metrics_url_for(environment.host or "")


def _scrape() -> dict[str, dict] | None:
    """{model: its counters} for MODEL and STEP (if any)."""
    try:
        return {model: metrics.scrape(RUN.metrics_url, model) for model in (MODEL, STEP) if model}
    except metrics.MetricsError as exc:
        RUN.note = f"Server-side figures unavailable: {exc}"
        return None


@events.test_start.add_listener
def _start(environment, **_kwargs):
    opts = environment.parsed_options
    if opts is None:
        return
    if not isinstance(environment.runner, WorkerRunner) and opts.target_rps:
        # the per-user rate is a custom argument, so a master forwards it to its workers with the spawn
        users = environment.runner.target_user_count or opts.num_users or 1
        opts.rate_per_user = opts.target_rps / users
    if opts.rate_per_user > 0:
        for user in environment.user_classes:
            user.wait_time = constant_throughput(opts.rate_per_user)
    if RUN.metrics_url and not isinstance(environment.runner, WorkerRunner):
        RUN.before = _scrape()


def figures(environment) -> loadgate.LocustResult:
    """Locust's own figures for the whole run, taken as they are (nothing recomputed here)."""
    total = environment.stats.total
    errors = sorted(([e.occurrences, f"{e.name}: {e.error}"] for e in environment.stats.errors.values()), reverse=True)
    return loadgate.LocustResult(
        requests=total.num_requests, failures=total.num_failures, rps=total.total_rps,
        p50_ms=total.get_response_time_percentile(0.5), p95_ms=total.get_response_time_percentile(0.95),
        p99_ms=total.get_response_time_percentile(0.99), avg_ms=total.avg_response_time,
        errors=errors, exceptions=[e["msg"] for e in environment.runner.exceptions.values()])


@dataclass
class Verdict:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # check, measured, limit, result
    failed: list[str] = field(default_factory=list)

    def check(self, name: str, measured: str, limit: str, ok: bool, why: str) -> None:
        self.rows.append((name, measured, limit, "ok" if ok else "FAIL"))
        if not ok:
            self.failed.append(why)


def judge(f: loadgate.LocustResult, limits: loadgate.Thresholds, server: metrics.ServerFigures | None,
          target_rps: float = 0) -> Verdict:
    v = Verdict()
    v.check("requests sent", str(f.requests), "> 0", f.requests > 0,
            "no request completed: is the URL right and the model loaded?"
            + (f" Locust says: {f.exceptions[-1]}" if f.exceptions else "")
            + (f" Most frequent failure: {f.errors[0][1]}" if f.errors else ""))
    v.check("errors in user code", str(len(f.exceptions)), "0", not f.exceptions,
            f"Locust caught {len(f.exceptions)} error(s) in user code (a user that could not start?): {f.exceptions[:1]}")
    most = f"; most frequent: {f.errors[0][1]}" if f.errors else ""
    if limits.max_error_rate is None:
        v.check("failed requests (client)", str(f.failures), f"<= {limits.max_failures}", f.failures <= limits.max_failures,
                f"{f.failures} of {f.requests} requests failed" + most)
    else:
        rate = f.failures / f.requests if f.requests else 0.0
        v.check("failed requests (client)", f"{f.failures} ({rate:.2%})", f"<= {limits.max_error_rate:.2%} of requests",
                rate <= limits.max_error_rate, f"{f.failures} of {f.requests} requests failed ({rate:.2%}, more than "
                f"the {limits.max_error_rate:.2%} allowed)" + most)
    if server is not None:
        if limits.max_error_rate is None:
            v.check("failed inferences (server)", str(server.failure), f"<= {limits.max_failures}",
                    server.failure <= limits.max_failures, f"the server counted {server.failure} failed inferences")
        else:
            total = server.success + server.failure
            rate = server.failure / total if total else 0.0
            v.check("failed inferences (server)", f"{server.failure} ({rate:.2%})", f"<= {limits.max_error_rate:.2%}",
                    rate <= limits.max_error_rate, f"the server counted {server.failure} failed inferences ({rate:.2%})")
    if limits.p95_ms is not None:
        v.check("p95 latency", f"{f.p95_ms:.1f} ms", f"<= {limits.p95_ms:g} ms", f.p95_ms <= limits.p95_ms,
                f"p95 latency {f.p95_ms:.1f} ms is above the {limits.p95_ms:g} ms threshold"
                + (f" at {target_rps:g} req/s" if target_rps else ""))
    if limits.p99_ms is not None:
        v.check("p99 latency", f"{f.p99_ms:.1f} ms", f"<= {limits.p99_ms:g} ms", f.p99_ms <= limits.p99_ms,
                f"p99 latency {f.p99_ms:.1f} ms is above the {limits.p99_ms:g} ms threshold"
                + (f" at {target_rps:g} req/s" if target_rps else ""))
    if target_rps:
        want = limits.min_rate_share * target_rps
        v.check("achieved rate (open loop)", f"{f.rps:.1f} req/s", f">= {want:g} req/s", f.rps >= want,
                f"achieved {f.rps:.1f} req/s, below {limits.min_rate_share:.0%} of the {target_rps:g} req/s "
                "target: the client or the server could not keep up")
    elif limits.min_rps is not None:
        v.check("throughput", f"{f.rps:.1f} req/s", f">= {limits.min_rps:g} req/s", f.rps >= limits.min_rps,
                f"throughput {f.rps:.1f} req/s is below the {limits.min_rps:g} req/s threshold")
    return v


def report(environment, f: loadgate.LocustResult, limits: loadgate.Thresholds, server: metrics.ServerFigures | None,
           verdict: Verdict, step: metrics.ServerFigures | None = None) -> str:
    opts = environment.parsed_options
    load = f"{environment.runner.target_user_count or opts.num_users} users" + (
        f" at {opts.target_rps:g} req/s (open loop)" if opts.target_rps else "")
    source = ("the models' tritonops.json `slo`" if limits.target.startswith(loadgate.DESCRIPTOR_TARGET)
              else opts.slo_file)
    parts = [f"# Load test of {MODEL or 'every model with samples'} at {environment.host}",
             f"{load}, target `{limits.target}` of {source}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", "",
             loadgate.table(verdict.rows, ("check", "measured", "threshold", "result")), "",
             loadgate.table([("p50 latency", f"{f.p50_ms:g} ms"), ("p99 latency", f"{f.p99_ms:g} ms"),
                             ("avg latency", f"{f.avg_ms:.1f} ms"), *(server.rows() if server else []),
                             *([(f"server: {STEP} avg batch formed", f"{step.avg_batch:.2f}")] if step else [])],
                            ("figure", "value"))]
    if RUN.note:
        parts += ["", RUN.note]
    if f.errors:
        parts += ["", "Failures (Locust's):", "",
                  loadgate.table([(str(n), text) for n, text in f.errors[:10]], ("occurrences", "error"))]
    parts += ["", ("PASS" if not verdict.failed else "FAIL:\n" + "\n".join(f"  - {w}" for w in verdict.failed))]
    return "\n".join(parts) + "\n"


@events.quitting.add_listener
def _judge(environment, **_kwargs):
    if not _judging(environment):
        return
    opts = environment.parsed_options
    if environment.runner.state in (STATE_RUNNING, STATE_SPAWNING):
        # SIGTERM or Ctrl-C quit a running test: stop its users first, so the figures and the closing
        # scrape cover the same requests
        environment.runner.stop()
    f = figures(environment)
    if opts.figures_file:
        Path(opts.figures_file).write_text(json.dumps(asdict(f), indent=1) + "\n")
    if RUN.limits is None:
        return
    # The closing scrape is taken here, not at test_stop: a master fires test_stop when its run time ends,
    # before its workers have stopped (seen: the server counted 5 requests fewer than Locust). By now the
    # master's own quitting listener has stopped them and collected their last figures.
    after = _scrape() if RUN.before is not None else None
    server, step = (metrics.difference(RUN.before[m], after[m]) if RUN.before and after and m else None
                    for m in (MODEL, STEP))
    verdict = judge(f, RUN.limits, server, opts.target_rps)
    RUN.verdict = report(environment, f, RUN.limits, server, verdict, step)
    if opts.slo_report:
        Path(opts.slo_report).write_text(RUN.verdict)
    environment.process_exit_code = 1 if verdict.failed else 0


@events.quit.add_listener
def _print_verdict(**_kwargs):
    """After Locust's own tables, so the verdict is the last thing a run prints."""
    if RUN.verdict:
        print("\n" + RUN.verdict, end="", flush=True)
