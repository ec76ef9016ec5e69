"""`make bench`'s open-loop sweep: latency against offered load, and where it crosses the SLO.

perf_analyzer --request-rate-range sends requests on a schedule (open loop) at fractions of the
maximum the closed-loop sweep measured, so queueing shows the way real traffic meets it. The SLO
is loadtests/thresholds.toml's table (local-cpu by default), read by loadgate.load_thresholds. It is
a p95 bound; the crossing is reported for p99 (the issue's reading, stricter) and p95 (the gate's).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..serving import loadgate
from . import perf_analyzer, plots

FRACTIONS = (0.25, 0.5, 0.75, 0.9)
SLO_TARGET = "local-cpu"
# perf_analyzer's client threads for the open loop: more than 16 only contend for the 2 cores
# (p99 x4 here), and its --async mode kept up worse than 16 synchronous threads.
MAX_THREADS = 16


@dataclass(frozen=True)
class Sweep:
    max_throughput: float  # infer/s, the closed-loop maximum the rates are fractions of
    fractions: tuple[float, ...]
    points: list[perf_analyzer.Point]
    failed: dict[int, str]  # offered rate -> why perf_analyzer gave no result
    slo: loadgate.Thresholds

    def crossing(self, percentile: str = "p99") -> str:
        """The offered rate at which the percentile's latency crosses the SLO's p95_ms, in words."""
        limit_us = self.slo.p95_ms * 1000
        pts = sorted(self.points, key=lambda p: p.request_rate)
        if not pts:
            return "not measured"
        lat = [getattr(p, f"{percentile}_us") for p in pts]
        if lat[0] > limit_us:
            return f"already above {self.slo.p95_ms:g} ms at the lowest rate ({pts[0].request_rate:,.0f} req/s)"
        for (a, la), (b, lb) in zip(zip(pts, lat), zip(pts[1:], lat[1:])):
            if lb > limit_us:
                rate = a.request_rate + (b.request_rate - a.request_rate) * (limit_us - la) / (lb - la)
                return (f"~{rate:,.0f} req/s ({rate / self.max_throughput:.0%} of max; between "
                        f"{a.request_rate:,.0f} and {b.request_rate:,.0f}, linear interpolation)")
        return (f"not crossed up to {pts[-1].request_rate:,.0f} req/s ({pts[-1].request_rate / self.max_throughput:.0%} "
                f"of max; {percentile} there {lat[-1] / 1000:.2f} ms)")


def run(server, model: str, max_throughput: float, out: Path, opts: perf_analyzer.Options, *, fractions=FRACTIONS,
        target: str = SLO_TARGET, max_threads: int = MAX_THREADS) -> Sweep:
    slo = loadgate.load_thresholds(loadgate.THRESHOLDS, target)
    rates = sorted({max(1, round(max_throughput * f)) for f in fractions})
    points, failed = perf_analyzer.against(server, model, out / f"{model}.sweep.perf_analyzer.csv", opts, rates=rates,
                                           max_threads=max_threads)
    return Sweep(max_throughput, tuple(fractions), points, failed, slo)


def markdown(sweep: Sweep) -> str:
    rows = [(f"{p.request_rate:,.0f}", f"{p.request_rate / sweep.max_throughput:.0%}", f"{p.throughput:,.0f}",
             f"{p.delayed_pct:.0f}%", f"{p.p50_us / 1000:.2f}", f"{p.p95_us / 1000:.2f}", f"{p.p99_us / 1000:.2f}",
             f"{p.avg_batch:.2f}", str(p.tries)) for p in sorted(sweep.points, key=lambda p: p.request_rate)]
    rows += [(f"{rate:,}", f"{rate / sweep.max_throughput:.0%}", "no result", "", "", "", "", "", why)
             for rate, why in sweep.failed.items()]
    table = loadgate.table(rows, ("offered req/s", "of max", "achieved infer/s", "sent late", "p50 ms", "p95 ms",
                                  "p99 ms", "avg batch", "tries"))
    return (f"Open loop (perf_analyzer --request-rate-range, {MAX_THREADS} client threads), linear, at "
            f"{', '.join(f'{f:.0%}' for f in sweep.fractions)} of the measured maximum {sweep.max_throughput:,.0f} infer/s:\n\n"
            f"{table}\n\n"
            f"- p99 crosses the {sweep.slo.target} SLO ({sweep.slo.p95_ms:g} ms, loadtests/thresholds.toml): "
            f"{sweep.crossing('p99')}\n"
            f"- p95 (the SLO's own percentile) crosses it: {sweep.crossing('p95')}\n")


def plot(sweep: Sweep, path: Path, title: str) -> None:
    pts = sorted(sweep.points, key=lambda p: p.request_rate)
    fig, ax = plots.figure(figsize=(7, 4.2))
    xs = [p.request_rate for p in pts]
    for name in ("p50", "p95", "p99"):
        ax.plot(xs, [getattr(p, f"{name}_us") / 1000 for p in pts], marker="o", label=name)
    ax.axhline(sweep.slo.p95_ms, color="red", linestyle="--", label=f"{sweep.slo.target} SLO ({sweep.slo.p95_ms:g} ms)")
    ax.axvline(sweep.max_throughput, color="grey", linestyle=":", label="closed-loop max")
    ax.set_yscale("log")
    plots.finish([ax], fig, path, xlabel="offered load (requests/s, perf_analyzer open loop, HTTP, batch 1)",
                 ylabels=["latency (ms)"], title=title)
