"""`make loadtest`: builds the command line of a headless, gated Locust run and returns its exit code.

--model picks the Locust file (loadtests/linear.py, or loadtests/embed.py for the embed ensemble) and
the thresholds table judged by default (local-cpu, local-cpu-embed). Any other model of --repository (and
linear or embed of a repository other than the shipped one) runs loadtests/models.py: that model's descriptor samples, judged
by default against its descriptor's `slo` (p99_ms, max_error_rate; target `descriptor`).

The gate itself is Locust's: loadtests/slo_gate.py's event hooks judge the run against a table of
loadtests/thresholds.toml (--slo) and set the exit code (0 pass, 1 a check failed, 2 a bad
thresholds file). Locust's CSV and HTML report, its log, the verdict (summary.md) and Locust's
figures (figures.json) go to the report folder. Here too: the thresholds file's reader (the gate,
the bench's sweep and the tests read it), and start_locust/LocustRun for tools that stop Locust
themselves and read its figures (locustcost, the fleet drills).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .. import settings

LOCUSTFILE = settings.ROOT / "loadtests" / "linear.py"
# model -> (its Locust file, its user classes (the first is the default), its default thresholds table)
MODELS = {
    "linear": (LOCUSTFILE, ("LinearHttpUser", "LinearGrpcUser"), "local-cpu"),
    "embed": (settings.ROOT / "loadtests" / "embed.py", ("EmbedHttpUser",), "local-cpu-embed"),
}
# Any other model (or REPO given): the descriptor-driven Locust file, judged by the model's own `slo`.
MODELS_FILE = settings.ROOT / "loadtests" / "models.py"
GENERIC = (MODELS_FILE, ("ModelsHttpUser",), "descriptor")
THRESHOLDS = settings.ROOT / "loadtests" / "thresholds.toml"
REPORTS = settings.ROOT / "reports" / "loadtest"
THRESHOLD_FIELDS = {"p95_ms": float, "min_rps": float, "max_failures": int, "min_rate_share": float}
OPTIONAL = {"max_failures": 0, "min_rate_share": 0.95}
# How long LocustRun.stop waits for Locust to stop its users and write its figures; past that it is hung.
EXIT_MARGIN_S = 120


class GateError(RuntimeError):
    """The gate could not run (bad thresholds file, Locust did not produce its figures)."""


@dataclass(frozen=True)
class Thresholds:
    target: str
    p95_ms: float | None  # None: not checked (thresholds from model descriptors, descriptor_thresholds)
    min_rps: float | None
    max_failures: int = 0
    min_rate_share: float = 0.95  # open loop (--target-rps): the achieved rate's least share of the target
    p99_ms: float | None = None  # from a descriptor's slo
    max_error_rate: float | None = None  # from a descriptor's slo: replaces max_failures (a share of requests)


# `--slo descriptor` (loadtests/models.py, make loadtest MODEL=<a model of the repository>): the thresholds
# are the models' own (tritonops.json `slo`, DEFAULT_SLO for keys left out), not a table of the file.
DESCRIPTOR_TARGET = "descriptor"


def descriptor_thresholds(slos: dict[str, dict]) -> Thresholds:
    """One gate for the models loaded together ({model: its descriptor's slo}): the strictest p99_ms and
    max_error_rate among them (Locust's figures are judged over the whole run)."""
    if not slos:
        raise GateError("no model to take SLO thresholds from")
    return Thresholds(target=f"{DESCRIPTOR_TARGET} ({', '.join(sorted(slos))})", p95_ms=None, min_rps=None,
                      p99_ms=min(float(s["p99_ms"]) for s in slos.values()),
                      max_error_rate=min(float(s["max_error_rate"]) for s in slos.values()))


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
            if name in OPTIONAL:
                continue
            raise GateError(f"{path}: [{target}] {name} is missing")
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise GateError(f"{path}: [{target}] {name} = {value!r} must be a{'n integer' if kind is int else ' number'}")
        if value < 0 or (name != "max_failures" and value == 0):
            raise GateError(f"{path}: [{target}] {name} = {value!r} must be > 0" if name != "max_failures"
                            else f"{path}: [{target}] {name} = {value!r} must be >= 0")
        if name == "min_rate_share" and value > 1:
            raise GateError(f"{path}: [{target}] {name} = {value!r} must be <= 1")
        values[name] = kind(value)
    unknown = set(table) - set(THRESHOLD_FIELDS) - {"description"}
    if unknown:
        raise GateError(f"{path}: [{target}] unknown field(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(THRESHOLD_FIELDS)}, description)")
    return Thresholds(target=target, **values)


@dataclass(frozen=True)
class LocustResult:
    """Locust's own figures for a whole run (loadtests/slo_gate.figures), as its --figures-file holds them."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    errors: list  # [occurrences, "name: error"], most frequent first
    exceptions: list  # errors in user code (a user that could not start)


@dataclass
class LocustRun:
    """A headless Locust started by start_locust(): its process (own session) and where it writes."""

    proc: subprocess.Popen
    figures: Path
    log: Path

    def stop(self, timeout: float = EXIT_MARGIN_S) -> None:
        """SIGTERM: Locust stops its users and writes its figures; killed (session and all) if it hangs."""
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
        if not self.figures.exists():
            raise GateError(f"Locust exited with {self.proc.returncode} and wrote no {self.figures.name}; "
                            f"its log ({self.log}):\n{_tail(self.log)}")
        return LocustResult(**json.loads(self.figures.read_text()))


def locust_command(url: str, users: int, duration: str, report_dir: Path, *, prefix: str = "locust",
                   user_class: str = "", binary: bool = False, batch_size: int = 0, processes: int = 0,
                   grpc_url: str = "", extra: list[str] | None = None, locustfile: Path = LOCUSTFILE) -> list[str]:
    """Locust headless on the Locust file, its reports under report_dir/prefix*; user_class may name several."""
    out = report_dir / prefix
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users),
           "-t", duration, "-H", url, "--csv", str(out), "--html", f"{out}.html", "--figures-file", f"{out}.figures.json",
           "--only-summary", "--stop-timeout", "5", "--batch-size", str(batch_size)]
    if binary:
        cmd.append("--binary")
    if processes:
        cmd += ["--processes", str(processes)]
    if grpc_url:
        cmd += ["--grpc-host", grpc_url]
    return cmd + (extra or []) + user_class.split()


def start_locust(url: str, users: int, duration: str, report_dir: Path, *, prefix: str = "locust", **kwargs) -> LocustRun:
    """Start the Locust file headless (locust_command's arguments) in its own session, output to its log,
    for a caller that stops it (LocustRun.stop) and reads its figures (LocustRun.results)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    cmd = locust_command(url, users, duration, report_dir, prefix=prefix, **kwargs)
    log = report_dir / f"{prefix}.log"
    with open(log, "w") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=settings.ROOT, start_new_session=True)
    return LocustRun(proc, report_dir / f"{prefix}.figures.json", log)


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


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A markdown table that also reads well on a terminal."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=f"http://127.0.0.1:{settings.port('http')}",
                        help="the server's HTTP URL (Locust -H)")
    parser.add_argument("--users", type=int, default=16, help="concurrent users (spawned at once)")
    parser.add_argument("--duration", default="30s", help="Locust --run-time, e.g. 30s, 2m")
    parser.add_argument("--model", default="linear",
                        help="model to load (default: linear). linear and embed: their own Locust files and "
                             "default thresholds tables; any other model of --repository: loadtests/models.py, "
                             "its descriptor's samples and slo")
    parser.add_argument("--repository", type=Path, default=None,
                        help=f"model repository whose descriptors loadtests/models.py reads (default: "
                             f"{settings.MODEL_REPOSITORY}); another repository's linear or embed goes through it too")
    parser.add_argument("--target", default="",
                        help="table of the thresholds file to judge against (default: the model's, "
                             + ", ".join(f"{m}: {t}" for m, (_, _, t) in MODELS.items())
                             + f", others: {GENERIC[2]}, the descriptor's slo)")
    parser.add_argument("--thresholds", type=Path, default=THRESHOLDS)
    parser.add_argument("--rate", type=float, default=0,
                        help="open loop: requests a second for all users together (Locust --target-rps); "
                             "the gate checks p95 at that rate and that the rate was reached. 0: closed loop")
    parser.add_argument("--report-dir", type=Path, default=REPORTS)
    parser.add_argument("--metrics-url", default="",
                        help=f"Triton /metrics (default: the URL's host, port {settings.port('metrics')})")
    parser.add_argument("--user-class", default="", choices=["", *(u for _, users, _ in [*MODELS.values(), GENERIC] for u in users)],
                        help="Locust user class of the model's Locust file (default: its first, "
                             + ", ".join(f"{m}: {users[0]}" for m, (_, users, _) in MODELS.items()) + ")")
    parser.add_argument("--grpc-url", default="", help=f"gRPC host:port for LinearGrpcUser (default: the URL's host, "
                                                        f"port {settings.port('grpc')})")
    parser.add_argument("--binary", action="store_true", help="HTTP binary tensor extension instead of JSON")
    parser.add_argument("--batch-size", type=int, default=0, help="rows (embed: sentences) per request; 0: mixed, linear 1..max_batch_size, embed 1..8")
    parser.add_argument("--processes", type=int, default=0, help="Locust --processes (0: one process, -1: one per core)")
    parser.add_argument("--locust-args", default="", help="more Locust arguments, e.g. '--master --expect-workers 3' "
                                                        "to gate a run whose load comes from workers on other machines")
    a = parser.parse_args(argv)
    if a.users < 1:
        parser.error(f"--users {a.users}: must be >= 1")
    model_args = []
    shipped = a.repository is None or a.repository.resolve() == settings.MODEL_REPOSITORY.resolve()
    if a.model in MODELS and shipped:
        locustfile, user_classes, default_target = MODELS[a.model]
    else:
        from . import smoke

        repository = a.repository or settings.MODEL_REPOSITORY
        try:
            smoke.descriptors_of(repository, [a.model])
        except smoke.SmokeFailure as exc:
            parser.error(f"--model {a.model}: {exc}")
        locustfile, user_classes, default_target = GENERIC
        model_args = ["--model", a.model, "--repository", str(repository)]
    if a.user_class and a.user_class not in user_classes:
        parser.error(f"--user-class {a.user_class}: not a user of --model {a.model} ({', '.join(user_classes)})")
    if a.grpc_url and "LinearGrpcUser" not in user_classes:
        parser.error(f"--grpc-url: --model {a.model} is loaded over HTTP only")
    url = a.url if "://" in a.url else f"http://{a.url}"
    if not urlsplit(url).hostname:
        parser.error(f"--url {a.url!r}: no host")
    a.report_dir.mkdir(parents=True, exist_ok=True)
    gate = ["--slo", a.target or default_target, "--slo-file", str(a.thresholds), "--slo-report", str(a.report_dir / "summary.md"),
            "--logfile", str(a.report_dir / "locust.log")]
    gate += ["--metrics-url", a.metrics_url] if a.metrics_url else []
    gate += ["--target-rps", str(a.rate)] if a.rate else []
    cmd = locust_command(url, a.users, a.duration, a.report_dir, user_class=a.user_class, binary=a.binary,
                         batch_size=a.batch_size, processes=a.processes, grpc_url=a.grpc_url,
                         extra=gate + model_args + shlex.split(a.locust_args), locustfile=locustfile)
    print("$ " + shlex.join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=settings.ROOT)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached Locust too: it stops, writes its reports and exits
            continue


if __name__ == "__main__":
    raise SystemExit(main())
