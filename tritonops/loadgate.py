"""`make loadtest`: run loadtests/linear.py headless, then pass or fail the run against its SLO.

The run fails (exit 1) when any request failed (wrong answers included), when the server counted
failed inferences, when p95 latency is above the target's threshold or throughput below it.
Thresholds live in loadtests/thresholds.toml, one table per target (local-cpu, gpu, ...).
Locust's CSV and HTML report, its log and a markdown summary go to the report folder; the
server's own figures for the run come from two scrapes of its /metrics.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from . import contract, metrics, settings

LOCUSTFILE = settings.ROOT / "loadtests" / "linear.py"
THRESHOLDS = settings.ROOT / "loadtests" / "thresholds.toml"
REPORTS = settings.ROOT / "reports" / "loadtest"
THRESHOLD_FIELDS = {"p95_ms": float, "min_rps": float, "max_failures": int}
# Locust's start (imports, --expect-workers-max-wait) and stop (--stop-timeout) on top of its run time;
# past that it is hung, and the gate says so instead of hanging with it.
EXIT_MARGIN_S = 120


class GateError(RuntimeError):
    """The gate could not run (bad thresholds file, Locust did not produce its stats)."""


@dataclass(frozen=True)
class Thresholds:
    target: str
    p95_ms: float
    min_rps: float
    max_failures: int = 0


def load_thresholds(path: Path, target: str) -> Thresholds:
    """One target's table; every error names the file, the target and the field."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise GateError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise GateError(f"{path}: not valid TOML: {exc}") from None
    if target not in data or not isinstance(data[target], dict):
        known = ", ".join(k for k, v in data.items() if isinstance(v, dict)) or "none"
        raise GateError(f"{path}: no [{target}] table (targets: {known})")
    table = data[target]
    values = {}
    for name, kind in THRESHOLD_FIELDS.items():
        if name not in table:
            if name == "max_failures":
                continue
            raise GateError(f"{path}: [{target}] {name} is missing")
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise GateError(f"{path}: [{target}] {name} = {value!r} must be a{'n integer' if kind is int else ' number'}")
        if value < 0 or (name != "max_failures" and value == 0):
            raise GateError(f"{path}: [{target}] {name} = {value!r} must be > 0" if name != "max_failures"
                            else f"{path}: [{target}] {name} = {value!r} must be >= 0")
        values[name] = kind(value)
    unknown = set(table) - set(THRESHOLD_FIELDS) - {"description"}
    if unknown:
        raise GateError(f"{path}: [{target}] unknown field(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(THRESHOLD_FIELDS)}, description)")
    return Thresholds(target=target, **values)


@dataclass(frozen=True)
class LocustResult:
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    errors: list[tuple[int, str]]  # (occurrences, "name: message"), most frequent first; from the last
    # CSV snapshot (Locust rewrites it once a second), so counts may trail the final ones
    log_errors: list[str]  # ERROR lines of Locust's log (a user that could not start, a bad argument)
    stats_csv: Path
    html: Path
    log: Path


@dataclass
class LocustRun:
    """A headless Locust started by start_locust(): its process (own session) and where it writes."""

    proc: subprocess.Popen
    csv_prefix: Path
    html: Path
    log: Path

    def stop(self, timeout: float = EXIT_MARGIN_S) -> None:
        """SIGTERM: Locust stops its users and writes its final stats; killed (session and all) if it hangs."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise GateError(f"Locust did not exit within {timeout:g} s of SIGTERM: killed; its log ({self.log}):\n{_tail(self.log)}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def results(self) -> LocustResult:
        summary = Path(f"{self.csv_prefix}.json")
        if not summary.exists():
            raise GateError(f"Locust exited with {self.proc.returncode} and wrote no {summary.name}; its log ({self.log}):\n{_tail(self.log)}")
        return _read_results(summary, Path(f"{self.csv_prefix}_failures.csv"), Path(f"{self.csv_prefix}_stats.csv"),
                             self.html, self.log)


def start_locust(url: str, users: int, duration: str, report_dir: Path, *, prefix: str = "locust",
                 user_class: str = "", binary: bool = False, batch_size: int = 0, processes: int = 0,
                 grpc_url: str = "", extra: list[str] | None = None, locustfile: Path = LOCUSTFILE) -> LocustRun:
    """Start the Locust file headless as its users would (a subprocess in its own session, so a hung
    run is ended with its --processes workers); user_class may name several, space-separated."""
    report_dir.mkdir(parents=True, exist_ok=True)
    csv_prefix = report_dir / prefix
    html = report_dir / f"{prefix}.html"
    log = report_dir / f"{prefix}.log"
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users),
           "-t", duration, "-H", url, "--csv", str(csv_prefix), "--html", str(html), "--json-file", str(csv_prefix), "--only-summary",
           "--stop-timeout", "5", "--batch-size", str(batch_size)]
    if binary:
        cmd.append("--binary")
    if processes:
        cmd += ["--processes", str(processes)]
    if grpc_url:
        cmd += ["--grpc-host", grpc_url]
    cmd += extra or []
    cmd += user_class.split()
    with open(log, "w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=settings.ROOT, start_new_session=True)
    return LocustRun(proc, csv_prefix, html, log)


def run_locust(url: str, users: int, duration: str, report_dir: Path, *, exit_margin_s: float = EXIT_MARGIN_S,
               **kwargs) -> LocustResult:
    """Run Locust for `duration` (start_locust's arguments), then read its stats."""
    run = start_locust(url, users, duration, report_dir, **kwargs)
    limit = run_seconds(duration) + exit_margin_s
    try:
        run.proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        run.kill()
        raise GateError(f"Locust did not exit within {limit:g} s ({duration} run + {exit_margin_s:g} s to start "
                        f"and stop): hung, killed; its log ({run.log}):\n{_tail(run.log)}") from None
    except BaseException:  # Ctrl-C: do not leave Locust running
        run.kill()
        raise
    return run.results()


def run_seconds(duration: str) -> int:
    """Locust's --run-time (30, 30s, 2m, 1h30m) in seconds. Not locust.util.timespan: importing locust
    here would monkey-patch this process for gevent (and deadlocks one that already runs threads)."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", duration.strip())
    if not duration.strip() or not match:
        raise GateError(f"run time {duration!r}: expected e.g. 30s, 2m, 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text().splitlines()[-lines:])


def percentile(histogram: dict[int, int], count: int, fraction: float) -> float:
    """Locust's own percentile rule over its {rounded ms: count} histogram (locust.stats isn't
    imported here: importing locust monkey-patches this whole process for gevent)."""
    wanted = int(count * fraction)
    seen = 0
    for ms in sorted(histogram, reverse=True):
        seen += histogram[ms]
        if count - seen <= wanted:
            return float(ms)
    return 0.0


def _message(error: str) -> str:
    """WrongAnswer("wrong answer: ...") -> wrong answer: ...; other exceptions keep their type."""
    match = re.fullmatch(r"""(\w+)\((['"])(.*)\2\)""", error, re.S)
    if not match:
        return error
    kind, _, text = match.groups()
    return text if kind == "WrongAnswer" else f"{kind}: {text}"


def _read_results(summary: Path, failures: Path, stats_csv: Path, html: Path, log: Path) -> LocustResult:
    """Figures from --json-file, Locust's final stats (its CSV is rewritten once a second, so it lags)."""
    entries = json.loads(summary.read_text())
    histogram: dict[int, int] = {}
    for entry in entries:
        for ms, n in entry["response_times"].items():
            histogram[int(float(ms))] = histogram.get(int(float(ms)), 0) + n
    requests = sum(e["num_requests"] for e in entries)
    stamps = [e["last_request_timestamp"] for e in entries if e.get("last_request_timestamp")]
    elapsed = max(stamps) - min(e["start_time"] for e in entries) if stamps else 0.0
    errors = []
    if failures.exists():
        with open(failures, newline="") as f:
            errors = sorted(((int(r["Occurrences"]), f"{r['Name']}: {_message(r['Error'])}")
                             for r in csv.DictReader(f)), reverse=True)
    log_errors = [line.strip() for line in log.read_text().splitlines() if "/ERROR/" in line or "Error:" in line]
    return LocustResult(
        requests=requests, failures=sum(e["num_failures"] for e in entries),
        rps=requests / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(histogram, requests, 0.5), p95_ms=percentile(histogram, requests, 0.95),
        p99_ms=percentile(histogram, requests, 0.99),
        avg_ms=sum(e["total_response_time"] for e in entries) / requests if requests else 0.0,
        errors=errors, log_errors=log_errors[:5], stats_csv=stats_csv, html=html, log=log)


@dataclass
class Verdict:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # check, measured, limit, result
    failed: list[str] = field(default_factory=list)

    def check(self, name: str, measured: str, limit: str, ok: bool, why: str) -> None:
        self.rows.append((name, measured, limit, "ok" if ok else "FAIL"))
        if not ok:
            self.failed.append(why)


def judge(result: LocustResult, limits: Thresholds, server: metrics.ServerFigures | None) -> Verdict:
    v = Verdict()
    v.check("requests sent", str(result.requests), "> 0", result.requests > 0,
            "no request completed: is the URL right and the model loaded?"
            + (f" Locust says: {result.log_errors[-1]}" if result.log_errors else ""))
    v.check("failed requests (client)", str(result.failures), f"<= {limits.max_failures}",
            result.failures <= limits.max_failures,
            f"{result.failures} of {result.requests} requests failed"
            + (f"; most frequent: {result.errors[0][1]}" if result.errors else ""))
    if server is not None:
        v.check("failed inferences (server)", str(server.failure), f"<= {limits.max_failures}",
                server.failure <= limits.max_failures, f"the server counted {server.failure} failed inferences")
    v.check("p95 latency", f"{result.p95_ms:.1f} ms", f"<= {limits.p95_ms:g} ms", result.p95_ms <= limits.p95_ms,
            f"p95 latency {result.p95_ms:.1f} ms is above the {limits.p95_ms:g} ms threshold")
    v.check("throughput", f"{result.rps:.1f} req/s", f">= {limits.min_rps:g} req/s", result.rps >= limits.min_rps,
            f"throughput {result.rps:.1f} req/s is below the {limits.min_rps:g} req/s threshold")
    return v


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A markdown table that also reads well on a terminal."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def report(url: str, users: int, duration: str, limits: Thresholds, result: LocustResult,
           server: metrics.ServerFigures | None, server_note: str, verdict: Verdict) -> str:
    parts = [f"# Load test of {contract.MODEL} at {url}",
             f"{users} users, {duration}, target `{limits.target}`, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", "",
             table(verdict.rows, ("check", "measured", "threshold", "result")), "",
             table([("p50 latency", f"{result.p50_ms:.1f} ms"), ("p99 latency", f"{result.p99_ms:.1f} ms"),
                    ("avg latency", f"{result.avg_ms:.1f} ms"), *(server.rows() if server else [])],
                   ("figure", "value"))]
    if server_note:
        parts += ["", server_note]
    if result.errors:
        parts += ["", "Failures (Locust; counts from its last CSV snapshot, up to a second before the end):", "",
                  table([(str(n), text) for n, text in result.errors[:10]], ("occurrences", "error"))]
    parts += ["", f"Locust: {result.stats_csv}, {result.html}, {result.log}", "",
              ("PASS" if not verdict.failed else "FAIL:\n" + "\n".join(f"  - {w}" for w in verdict.failed))]
    return "\n".join(parts) + "\n"


def gate(url: str, users: int, duration: str, target: str, thresholds: Path, report_dir: Path,
         metrics_url: str | None = None, **locust_options) -> tuple[bool, str]:
    """Run the load test and judge it; returns (passed, markdown report) and writes summary.md."""
    limits = load_thresholds(thresholds, target)
    metrics_url = metrics_url or metrics.metrics_url_for(url)
    server, note = None, ""
    try:
        before = metrics.scrape(metrics_url, contract.MODEL)
    except metrics.MetricsError as exc:
        before, note = None, f"Server-side figures unavailable: {exc}"
    result = run_locust(url, users, duration, report_dir, **locust_options)
    if before is not None:
        try:
            server = metrics.difference(before, metrics.scrape(metrics_url, contract.MODEL))
        except metrics.MetricsError as exc:
            note = f"Server-side figures unavailable: {exc}"
    verdict = judge(result, limits, server)
    text = report(url, users, duration, limits, result, server, note, verdict)
    (report_dir / "summary.md").write_text(text)
    return not verdict.failed, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=f"http://127.0.0.1:{settings.port('http')}",
                        help="the server's HTTP URL (Locust -H)")
    parser.add_argument("--users", type=int, default=16, help="concurrent users (spawned at once)")
    parser.add_argument("--duration", default="30s", help="Locust --run-time, e.g. 30s, 2m")
    parser.add_argument("--target", default="local-cpu", help="table of the thresholds file to judge against")
    parser.add_argument("--thresholds", type=Path, default=THRESHOLDS)
    parser.add_argument("--report-dir", type=Path, default=REPORTS)
    parser.add_argument("--metrics-url", default=None,
                        help=f"Triton /metrics (default: the URL's host, port {settings.port('metrics')})")
    parser.add_argument("--user-class", default="", choices=["", "LinearHttpUser", "LinearGrpcUser"],
                        help="Locust user class (default: LinearHttpUser)")
    parser.add_argument("--grpc-url", default="", help=f"gRPC host:port for LinearGrpcUser (default: the URL's host, "
                                                        f"port {settings.port('grpc')})")
    parser.add_argument("--binary", action="store_true", help="HTTP binary tensor extension instead of JSON")
    parser.add_argument("--batch-size", type=int, default=0, help="rows per request (0: mixed 1..max_batch_size)")
    parser.add_argument("--processes", type=int, default=0, help="Locust --processes (0: one process, -1: one per core)")
    parser.add_argument("--locust-args", default="", help="more Locust arguments, e.g. '--master --expect-workers 3' "
                                                        "to gate a run whose load comes from workers on other machines")
    a = parser.parse_args(argv)
    if a.users < 1:
        parser.error(f"--users {a.users}: must be >= 1")
    url = a.url if "://" in a.url else f"http://{a.url}"
    if not urlsplit(url).hostname:
        parser.error(f"--url {a.url!r}: no host")
    try:
        passed, text = gate(url, a.users, a.duration, a.target, a.thresholds, a.report_dir, a.metrics_url,
                            user_class=a.user_class, grpc_url=a.grpc_url, binary=a.binary, batch_size=a.batch_size,
                            processes=a.processes, extra=shlex.split(a.locust_args))
    except GateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
