"""NVIDIA's perf_analyzer, taken from the tritonclient==<CPU_TRITON_VERSION> manylinux wheel, and a runner.

The venv pins a newer tritonclient (2.51.0's geventhttpclient<=2.0.2 pin holds Locust back), so
the matching C++ perf_analyzer is fetched on its own: `pip download` the wheel into .cache/, unpack
only the binary, and link the two shared libraries it needs (libb64.so.0d, libcudart.so.12) from
the nvidia-pytriton wheel's bundled libs under their plain sonames.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import settings

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
    """One concurrency level of a perf_analyzer run (latencies in microseconds, as it reports them)."""

    concurrency: int
    throughput: float  # inferences per second
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    avg_us: float  # average client-side latency
    queue_us: float  # server queue time per request
    compute_us: float  # server compute input + infer + output per request


def parse_csv(path: Path) -> list[Point]:
    """perf_analyzer's `-f` CSV: one row per concurrency level."""
    points = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                client = ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
                          "Server Compute Infer", "Server Compute Output", "Client Recv")
                points.append(Point(
                    concurrency=int(row["Concurrency"]),
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


def run(url: str, model: str, concurrency: list[int], csv_path: Path, *, batch_size: int = 1,
        measurement_ms: int = 4000, max_trials: int = 6, stability_pct: float = 25, log_path: Path | None = None,
        headers: dict[str, str] | None = None) -> tuple[list[Point], dict[int, str]]:
    """Sweep concurrency levels over HTTP against url (host:port): a Point per measured level (all in
    csv_path), and why for each level that could not be measured (the sweep goes on without it).

    --concurrency-range only steps arithmetically (1,4,16,64 is not), so each level is its own call.
    headers go on every request (-H): the admin key, without which its server-side statistics call is
    refused and it exits 99 ("This API is restricted"). The log shows their names, never their values.
    """
    binary = ensure()
    parts, failed = [], {}
    for level in concurrency:
        part = csv_path.with_name(f"{csv_path.stem}.c{level}{csv_path.suffix}")
        cmd = [str(binary), "-m", model, "-u", url, "-i", "http", "-b", str(batch_size),
               "--concurrency-range", str(level), "--measurement-mode", "time_windows",
               "--measurement-interval", str(measurement_ms), "--max-trials", str(max_trials),
               # a shared 2-core box rarely holds the default 10% between windows
               "--stability-percentage", f"{stability_pct:g}", "-f", str(part)]
        shown = " ".join(cmd + [f"-H {name}:***" for name in (headers or {})])
        cmd += [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}:{value}")]
        # It hangs now and then after its first pass (client memory growing, the server idle with
        # nothing pending), against fast models at c >= 16 even on a quiet box: about half the
        # runs of identity at c=16 here. Bound each try and make three.
        limit = measurement_ms / 1000 * (max_trials + 2) + 20
        for attempt in (1, 2, 3):
            try:
                done = subprocess.run(cmd, env=environment(), capture_output=True, text=True, timeout=limit)
                output = done.stdout + done.stderr
            except subprocess.TimeoutExpired as exc:
                done, output = None, f"(killed after {limit:.0f} s) " + "".join(
                    o.decode() if isinstance(o, bytes) else (o or "") for o in (exc.stdout, exc.stderr))
            if log_path:
                with open(log_path, "a") as log:
                    log.write(f"$ {shown}\n{output}\n")
            if done is not None and done.returncode == 0:
                parts.append(part)
                break
            if attempt == 3:
                last = [line.strip() for line in output.strip().splitlines() if line.strip()][-1:]
                failed[level] = (f"exit {done.returncode}" if done else f"no result in {limit:.0f} s") + (
                    f": {last[0]}" if last else "")
    if not parts:
        raise PerfAnalyzerError(f"perf_analyzer measured no level against {url}: {failed}")
    _merge_csv(parts, csv_path)
    return parse_csv(csv_path), failed


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
