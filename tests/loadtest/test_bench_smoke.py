"""Seconds-long smoke form of `make bench`: it runs end to end and writes its outputs.

A benchmark, not a test of speed: no figure is compared with a target here. Concurrency stays at
1 and 4: perf_analyzer was seen to hang at 16/64 against the fast identity model on a starved box.
It must pass on a busy box, so perf_analyzer's stability rule is relaxed (max/min of the last three
windows within 1000%, not the bench's 25%): on a loaded 2-core box a level could spread past 25%
in every window and get no number at all, which failed this test (issue 13). What the test still
demands is a number for every model and level: a broken perf_analyzer or bench model fails it.
"""
from __future__ import annotations

import csv
import shutil
import subprocess

from tritonops import bench, perf_analyzer, settings


def test_perf_analyzer_comes_from_the_pinned_wheel():
    binary = perf_analyzer.ensure()
    assert settings.get("CPU_TRITON_VERSION") in str(binary)  # the wheel server's release
    done = subprocess.run([str(binary), "--version"], env=perf_analyzer.environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # shared libraries resolve through the links in lib/


def test_make_bench_smoke_writes_table_plot_and_csvs(tmp_path):
    args = (f"--concurrency 1,4 --target-concurrency 4 --measurement-ms 500 --stability-percentage 1000 "
            f"--locust-duration 3s --report-dir {tmp_path}")
    done = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "bench", f"BENCH_ARGS={args}"],
                          cwd=settings.ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    table = (tmp_path / "bench.md").read_text()
    assert table in done.stdout  # printed as well as written
    rows = [line for line in table.splitlines() if line.startswith("| ") and "infer/s" not in line]
    for model in bench.MODELS:
        for level in ("1", "4"):
            assert any(f"| {model} " in r and "| perf_analyzer " in r and f"| {level} " in r for r in rows), (model, level)
        with open(tmp_path / f"{model}.perf_analyzer.csv", newline="") as f:
            points = list(csv.DictReader(f))
        assert [int(p["Concurrency"]) for p in points] == [1, 4]
        assert all(float(p["Inferences/Second"]) > 0 for p in points)
    assert any("| linear " in r and "| locust " in r and "| 4 " in r for r in rows)
    gateway_measured = shutil.which("haproxy") is not None  # the bench says why not, otherwise
    assert any("| perf_analyzer via gateway " in r and "| 4 " in r for r in rows) == gateway_measured, table
    for name in ("linear.locust_stats.csv", "linear.locust.html", "bench.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every target ratio is reported with its verdict (which one it is depends on this machine)
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    targets = [c for c in cells if c[-1] in ("met", "MISSED")]
    assert [c[0].split(",")[0] for c in targets] == [
        "linear / seed throughput", "linear / identity floor throughput", "linear / identity floor p99",
        *(["gateway / direct throughput (linear)"] if gateway_measured else []),
        "Locust / perf_analyzer throughput (linear)"]
