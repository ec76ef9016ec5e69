"""NVIDIA's perf_analyzer, taken from the tritonclient==<CPU_TRITON_VERSION> manylinux wheel, and a runner.

The venv pins a newer tritonclient (2.51.0's geventhttpclient<=2.0.2 pin holds Locust back), so
the matching C++ perf_analyzer is fetched on its own: `pip download` the wheel into .cache/, unpack
only the binary, and link the two shared libraries it needs (libb64.so.0d, libcudart.so.12) from
the nvidia-pytriton wheel's bundled libs under their plain sonames.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from .. import settings
from . import serverstats

CACHE = settings.ROOT / ".cache" / "perf_analyzer"
# soname perf_analyzer asks for -> glob of the hashed copy auditwheel put in nvidia_pytriton.libs/
NEEDED_LIBS = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


class PerfAnalyzerError(RuntimeError):
    pass


def _home() -> Path:
    return CACHE / settings.get("CPU_TRITON_VERSION")  # the wheel server's release


def _pytriton_libs() -> Path:
    import pytriton

    libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    if not libs.is_dir():
        raise PerfAnalyzerError(f"{libs} is missing: is nvidia-pytriton=={settings.get('PYTRITON_VERSION')} installed?")
    return libs


def ensure() -> Path:
    """Path of a runnable perf_analyzer; downloads and unpacks it on first use."""
    home = _home()
    binary = home / "bin" / "perf_analyzer"
    if not binary.exists():
        version = settings.get("CPU_TRITON_VERSION")
        wheels = home / "wheel"
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--platform", "manylinux1_x86_64",
               "--only-binary=:all:", f"tritonclient=={version}", "-d", str(wheels)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob(f"tritonclient-{version}-*manylinux*.whl"))
        if done.returncode != 0 or not found:
            raise PerfAnalyzerError(f"could not download tritonclient=={version} ({' '.join(cmd)}):\n{done.stderr.strip()}")
        member = f"tritonclient-{version}.data/data/bin/perf_analyzer"
        with zipfile.ZipFile(found[-1]) as wheel:
            try:
                info = wheel.getinfo(member)
            except KeyError:
                raise PerfAnalyzerError(f"{found[-1]} has no {member}") from None
            binary.parent.mkdir(parents=True, exist_ok=True)
            tmp = binary.with_suffix(".part")
            with wheel.open(info) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        tmp.chmod(0o755)
        tmp.rename(binary)
        shutil.rmtree(wheels)  # 14 MB we no longer need
    libdir = home / "lib"
    libdir.mkdir(exist_ok=True)
    libs = _pytriton_libs()
    for soname, pattern in NEEDED_LIBS.items():
        matches = sorted(libs.glob(pattern))
        if not matches:
            raise PerfAnalyzerError(f"no {pattern} in {libs}: perf_analyzer needs {soname}")
        link = libdir / soname
        if not (link.is_symlink() and link.resolve() == matches[-1].resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(matches[-1])
    return binary


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(_home() / "lib"), env.get("LD_LIBRARY_PATH")]))
    return env


@dataclass(frozen=True)
class Point:
    """One level of a perf_analyzer run (latencies in microseconds, as it reports them): a concurrency
    (closed loop) or, with request_rate > 0, an offered request rate (open loop, concurrency 0)."""

    concurrency: int
    throughput: float  # inferences per second
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    avg_us: float  # average client-side latency
    queue_us: float  # server queue time per request
    compute_us: float  # server compute input + infer + output per request
    request_rate: float = 0.0  # offered requests/s (open loop); 0 in concurrency mode
    tries: int = 1  # perf_analyzer calls this level took (hangs and unstable windows are retried)
    avg_batch: float = 0.0  # server statistics over the level: inferences / executions (0: not read)
    delayed_pct: float = 0.0  # open loop: share of requests perf_analyzer sent late (it could not keep up)


def parse_csv(path: Path) -> list[Point]:
    """perf_analyzer's `-f` CSV: one row per level (a "Concurrency" or a "Request Rate" column)."""
    points = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                client = ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
                          "Server Compute Infer", "Server Compute Output", "Client Recv")
                points.append(Point(
                    concurrency=int(row.get("Concurrency") or 0),
                    request_rate=float(row.get("Request Rate") or 0),
                    throughput=float(row["Inferences/Second"]),
                    p50_us=float(row["p50 latency"]), p90_us=float(row["p90 latency"]),
                    p95_us=float(row["p95 latency"]), p99_us=float(row["p99 latency"]),
                    avg_us=sum(float(row[c]) for c in client),
                    queue_us=float(row["Server Queue"]),
                    compute_us=sum(float(row[c]) for c in ("Server Compute Input", "Server Compute Infer",
                                                            "Server Compute Output")),
                ))
            except (KeyError, ValueError) as exc:
                raise PerfAnalyzerError(f"{path}: unexpected perf_analyzer CSV row {row}: {exc!r}") from None
    return points


# perf_analyzer's own default --measurement-request-count: a level with no rate known yet gets it
MIN_WINDOW_REQUESTS = 50


@dataclass(frozen=True)
class Options:
    """How every level is measured: perf_analyzer's windows and stability rule, and the retries."""

    measurement_ms: int = 4000  # what a window should last (it holds that long's worth of requests)
    max_trials: int = 6  # windows per call before perf_analyzer gives up on stability
    stability_pct: float = 25  # max/min of the last 3 windows' throughput and latency, in %
    tries: int = 3  # calls per level before it is reported as failed
    # Closed loop: --async, the level's requests kept in flight by async_threads threads. At concurrency
    # 64, perf_analyzer 2.51 stopped closing windows while the server kept answering ~5 000/s: its sync
    # client (64 threads) in every call, --async with its default 16 threads in 6 of 17, with 4 threads
    # in none of 8 (identity and linear). The open loop is never --async (bench.openloop).
    asynchronous: bool = True
    async_threads: int = 4
    log_path: Path | None = None  # every call's command line (header names only) and output, appended
    # the fewest requests a count window holds; a slow model (embed: tens a second on a busy box) gets a
    # lower floor, or its short smoke windows would last the floor's seconds instead of measurement_ms
    min_window_requests: int = MIN_WINDOW_REQUESTS


def run(url: str, model: str, concurrency: list[int], csv_path: Path, opts: Options = Options(), *,
        headers: dict[str, str] | None = None, batch_probe=None, expected_rate: float = 0.0,
        extra_args: list[str] | None = None) -> tuple[list[Point], dict[int, str]]:
    """Sweep concurrency levels over HTTP, batch 1, against url (host:port): a Point per measured level (all in
    csv_path), and why for each level that could not be measured (the sweep goes on without it).

    --concurrency-range only steps arithmetically (1,4,16,64 is not), so each level is its own call.
    headers go on every request (-H): the admin key, without which its server-side statistics call is
    refused and it exits 99 ("This API is restricted"). The log shows their names, never their values.
    Each level gets up to opts.tries calls; Point.tries says how many it took. batch_probe (a callable
    returning serverstats.BatchCounts) is read around the try that measured, for Point.avg_batch.
    expected_rate (infer/s, e.g. the same level measured directly) sizes the windows until a level here
    has been measured (see _window_requests). extra_args go to every call (e.g. --input-data FILE: the
    embed model's texts; perf_analyzer would send random bytes).
    """
    return _sweep(url, model, [(level, ["--concurrency-range", str(level), *(extra_args or [])])
                               for level in concurrency], csv_path, opts, headers=headers, batch_probe=batch_probe,
                  expected_rate=expected_rate)


def run_rates(url: str, model: str, rates: list[int], csv_path: Path, opts: Options = Options(), *,
              max_threads: int = 16, headers: dict[str, str] | None = None, batch_probe=None
              ) -> tuple[list[Point], dict[int, str]]:
    """Open loop: each offered request rate (requests/s, --request-rate-range) in its own call, requests
    sent on schedule whether or not earlier ones answered, from up to max_threads client threads.
    Same options, retries and result as run(); failed is keyed by rate."""
    return _sweep(url, model, [(rate, ["--request-rate-range", str(rate), "--max-threads", str(max_threads)])
                               for rate in rates], csv_path, opts, headers=headers, batch_probe=batch_probe,
                  rates=True)


def against(server, model: str, csv_path: Path, opts: Options, *, concurrency: list[int] | None = None,
            rates: list[int] | None = None, url: str = "", expected_rate: float = 0.0, max_threads: int = 16,
            extra_args: list[str] | None = None, batch_model: str = "") -> tuple[list[Point], dict[int, str]]:
    """run() (concurrency) or run_rates() (rates) against a tritonops LocalServer, with its admin key on
    every request and the average batch read from its statistics (of batch_model, default the model
    itself: an ensemble's step, whose batches the batcher forms). url: where the load goes (default the
    server itself; a gateway in front of it). extra_args: closed loop only, see run()."""
    headers = server.admin_headers()
    probe = serverstats.prober(server.http_url, batch_model or model, headers)
    if rates is not None:
        return run_rates(url or server.http_url, model, rates, csv_path, opts, max_threads=max_threads,
                         headers=headers, batch_probe=probe)
    return run(url or server.http_url, model, concurrency or [], csv_path, opts, headers=headers,
               batch_probe=probe, expected_rate=expected_rate, extra_args=extra_args)


def _window_requests(rate: float, opts: Options) -> int:
    """Requests one count window must hold to last about opts.measurement_ms at `rate` infer/s.

    Count windows, not time windows: perf_analyzer 2.51's time_windows mode never ended its first window
    at concurrency 64 here (linear and identity, 3 tries of 3, on two quiet runs), while count_windows
    measured the same level in seconds. perf_analyzer checks the count once a second, so a window lasts
    whole seconds, at least one."""
    return max(opts.min_window_requests, round(rate * opts.measurement_ms / 1000))


def _sweep(url: str, model: str, levels: list[tuple[int, list[str]]], csv_path: Path, opts: Options, *,
           headers: dict[str, str] | None = None, batch_probe=None, expected_rate: float = 0.0,
           rates: bool = False) -> tuple[list[Point], dict[int, str]]:
    binary = ensure()
    parts, failed, took, batch, delayed = [], {}, {}, {}, {}
    best = expected_rate  # the highest rate measured so far: windows at the next level hold that much
    for level, level_args in levels:
        part = csv_path.with_name(f"{csv_path.stem}.l{level}{csv_path.suffix}")
        count = _window_requests(level if rates else best, opts)
        # It hangs now and then after its first pass (client memory growing, the server idle with
        # nothing pending). Bound each try (windows twice as long as planned, plus perf_analyzer's
        # warm-up) and make several.
        limit = (2 * opts.measurement_ms / 1000 + 1) * (opts.max_trials + 2) + 20
        for attempt in range(1, opts.tries + 1):
            cmd = [str(binary), "-m", model, "-u", url, "-i", "http", "-b", "1", *level_args,
                   *(["--async", "--max-threads", str(opts.async_threads)] if opts.asynchronous and not rates else []),
                   "--measurement-mode", "count_windows", "--measurement-request-count", str(count),
                   "--max-trials", str(opts.max_trials), "-v",  # -v: each pass in the log, to see a slow one
                   # a shared 2-core box rarely holds the default 10% between windows
                   "--stability-percentage", f"{opts.stability_pct:g}", "-f", str(part)]
            shown = " ".join(cmd + [f"-H {name}:***" for name in (headers or {})])
            cmd += [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}:{value}")]
            before = batch_probe() if batch_probe else None
            try:
                done = subprocess.run(cmd, env=environment(), capture_output=True, text=True, timeout=limit)
                output = done.stdout + done.stderr
            except subprocess.TimeoutExpired as exc:
                done, output = None, f"(killed after {limit:.0f} s) " + "".join(
                    o.decode() if isinstance(o, bytes) else (o or "") for o in (exc.stdout, exc.stderr))
                # windows sized from a lower level's rate outlast the limit where this level is slower
                # (embed without batching at c=16 on a loaded box: 3 tries of 92 s): halve them
                count = max(opts.min_window_requests, count // 2)
            if opts.log_path:
                with open(opts.log_path, "a") as log:
                    log.write(f"$ {shown}\n(try {attempt} of {opts.tries}) {output}\n")
            if done is not None and done.returncode == 0:
                parts.append(part)
                took[level] = attempt
                late = re.findall(r"([0-9.]+)% of the requests were delayed", output)
                delayed[level] = max(map(float, late), default=0.0)
                if batch_probe:
                    batch[level] = (batch_probe() - before).avg_batch
                best = max(best, *(p.throughput for p in parse_csv(part)))
                break
            if attempt == opts.tries:
                last = [line.strip() for line in output.strip().splitlines() if line.strip()][-1:]
                failed[level] = (f"exit {done.returncode}" if done else f"no result in {limit:.0f} s") + (
                    f": {last[0]}" if last else "") + f" (all {opts.tries} tries failed)"
    if not parts:
        raise PerfAnalyzerError(f"perf_analyzer measured no level against {url}: {failed}")
    _merge_csv(parts, csv_path)
    points = parse_csv(csv_path)
    measured = [level for level, _ in levels if level in took]
    if len(points) != len(measured):
        raise PerfAnalyzerError(f"{csv_path}: {len(points)} rows for {len(measured)} measured levels {measured}")
    return [replace(p, tries=took[lv], avg_batch=batch.get(lv, 0.0), delayed_pct=delayed[lv])
            for p, lv in zip(points, measured)], failed


def _merge_csv(parts: list[Path], dest: Path) -> None:
    rows, header = [], None
    for part in parts:
        with open(part, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows += [r for r in reader if r]
        part.unlink()
    with open(dest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
