"""`make bench`: the shipped model against the seed's and the Python-backend floor, with perf_analyzer.

Each model gets its own real tritonserver (one at a time, free ports) and the same perf_analyzer
sweep: HTTP, batch 1, concurrency 1, 4, 16, 64 (--async from 4 threads: see perf_analyzer.Options).
The Locust file then loads the shipped model at concurrency 16 with the same request shape
(binary tensors, batch 1) to show how close Locust gets to NVIDIA's C++ load generator, and
perf_analyzer runs the target level once more through the gateway (this machine's haproxy,
gateway/haproxy.cfg.j2) to price it. Every perf_analyzer level also shows the average batch the
server formed (its statistics API, read around the level) and how many perf_analyzer calls it
took (--tries). Then, for linear: an open-loop sweep at fractions of its measured maximum
(bench.openloop: p50/p99 per offered rate, where p99 crosses the local-cpu SLO) and the config's
tuning knobs against alternatives (bench.tuning: queue delay, instance count). Last, the embed
ensemble with and without dynamic batching, and its load time (bench.embed). linear is served from a
repository holding only it (a symlink to the shipped model), as seed and identity are: the embed
pipeline's stubs would load beside it for nothing. Then every other model of --repository with samples
(its tritonops.json; none in the shipped repository) gets the same perf_analyzer levels, sending its
first sample (descriptor_rows), all of them on one server.
Writes bench.md (tables), bench.png and bench-sweep.png (plots) and the raw CSVs to
reports/bench/, prints the tables and the target ratios (all measured in this one run).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .. import settings
from ..models import descriptor, linear
from ..models.fetch import ensure as ensure_model_files
from ..serving import loadgate, metrics
from ..serving.server import LocalServer, ServerError, free_port
from ..stack import gateway
from . import embed, locustcost, openloop, perf_analyzer, plots, serverstats, tuning

BENCH_MODELS = settings.ROOT / "loadtests" / "bench_models"
REPORTS = settings.ROOT / "reports" / "bench"
# name -> (repository, what it is): models with linear's contract; "embed" (bench.embed) is chosen with them
MODELS = {
    "linear": (settings.MODEL_REPOSITORY, "shipped model_repository/linear"),
    "seed": (BENCH_MODELS / "seed", "the seed's model.py and config (per-request loop, INFO logs, batch 4)"),
    "identity": (BENCH_MODELS / "identity", "numpy identity, same scheduling: the Python-backend floor"),
}
# Targets (issue 3): ratios at concurrency 16, all from one run.
TARGET_CONCURRENCY = 16
SPEEDUP_OVER_SEED = 4.5
SHARE_OF_FLOOR = 0.95
P99_OVER_FLOOR = 1.1
LOCUST_SHARE = 0.7  # issue 14: Locust (binary, every answer checked) / perf_analyzer, sharing 2 cores with the server
LOCUST_TOOL = "locust binary"  # the Locust row compared with perf_analyzer (the same request: HTTP binary, batch 1)
GATEWAY_SHARE = 0.8  # issue 8: throughput through the gateway / direct, both on these 2 shared cores
GATEWAY_TOOL = "perf_analyzer via gateway"
# perf_analyzer's windows, stability rule and retries: perf_analyzer.Options' defaults
DEFAULTS = perf_analyzer.Options()


@dataclass(frozen=True)
class Row:
    model: str
    tool: str
    concurrency: int
    throughput: float  # inferences/s (batch 1: requests/s)
    p50_ms: float
    p99_ms: float
    queue_ms: float
    compute_ms: float
    client_cpu_us: float  # load generator CPU time per request (user + system); 0: not priced
    tries: int = 0  # perf_analyzer calls the level took (0: not perf_analyzer)
    avg_batch: float = 0.0  # server statistics over the level: inferences / executions (0: not read)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.system()} {platform.release()}, no GPU"


def _row(model: str, tool: str, p: perf_analyzer.Point, cpu_us: float) -> Row:
    return Row(model, tool, p.concurrency, p.throughput, p.p50_us / 1000, p.p99_us / 1000, p.queue_us / 1000,
               p.compute_us / 1000, cpu_us, p.tries, p.avg_batch)


def bench_model(name: str, repository: Path, concurrency: list[int], opts: perf_analyzer.Options, out: Path,
                locust_duration: str | None, notes: list[str], target_c: int = TARGET_CONCURRENCY,
                sweep_fractions: tuple[float, ...] = (), found: dict | None = None) -> list[Row]:
    """found, when given, receives "sweep" (openloop.Sweep) for linear when sweep_fractions is set."""
    rows = []
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    if Path(repository).resolve() == settings.MODEL_REPOSITORY.resolve():
        repository = linear_only(out / "repos" / "linear")
    with LocalServer(repository, host="127.0.0.1", log_path=out / f"{name}.server.log", **ports) as server:
        cpu = _children_cpu_s()
        points, failed = perf_analyzer.against(server, linear.MODEL, out / f"{name}.perf_analyzer.csv", opts,
                                               concurrency=concurrency)
        for level, why in failed.items():
            print(f"bench: {name}: perf_analyzer gave no result at concurrency {level}: {why}", flush=True)
            notes.append(f"{name}, concurrency {level}: perf_analyzer gave no result ({why}); see perf_analyzer.log")
        # perf_analyzer runs warm-up and several windows: CPU per request is spread over what the server counted.
        served = metrics.scrape(server.metrics_url, linear.MODEL)["nv_inference_request_success"]
        cpu_per_req = (_children_cpu_s() - cpu) / served * 1e6 if served else 0.0
        rows += [_row(name, "perf_analyzer", p, cpu_per_req) for p in points]
        if name == "linear":
            direct = next((p.throughput for p in points if p.concurrency == target_c), 0.0)
            rows += through_gateway(server, target_c, opts, out, notes, direct)
        if name == "linear" and sweep_fractions and found is not None:
            print(f"bench: {name}: open loop at {', '.join(f'{f:.0%}' for f in sweep_fractions)} of "
                  f"{max(p.throughput for p in points):,.0f} infer/s ...", flush=True)
            try:
                found["sweep"] = openloop.run(server, linear.MODEL, max(p.throughput for p in points), out,
                                                 opts, fractions=sweep_fractions)
            except perf_analyzer.PerfAnalyzerError as exc:
                print(f"bench: the open-loop sweep gave no result: {exc}", flush=True)
                notes.append(f"open-loop sweep: no result ({exc})")
            for rate, why in (found["sweep"].failed.items() if "sweep" in found else ()):
                notes.append(f"{name}, open loop at {rate} req/s: perf_analyzer gave no result ({why})")
        if locust_duration:  # each protocol priced over a window after warm-up (tritonops.bench.locustcost); 0 failures
            for protocol in locustcost.PROTOCOLS:
                cost = locustcost.measure(server.http_url, server.grpc_url, server.metrics_url, protocol, target_c,
                                          loadgate.run_seconds(locust_duration), out,
                                          prefix=f"{name}.locust" + ("" if protocol == "binary" else f"-{protocol}"))
                rows.append(Row(name, f"locust {protocol}", target_c, cost.throughput, cost.result.p50_ms,
                                cost.result.p99_ms, cost.server.avg_queue_us / 1000,
                                cost.server.avg_compute_us / 1000, cost.cpu_us))
    return rows


def linear_only(dest: Path) -> Path:
    """A repository at dest holding only the shipped linear model (a symlink to it)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    (dest / linear.MODEL).symlink_to(settings.MODEL_REPOSITORY.resolve() / linear.MODEL)
    return dest


# Models with a bench of their own (bench_model, embed_rows); every other model with samples gets descriptor_rows.
DEDICATED = ("linear", "embed")


def descriptor_input_data(sample: descriptor.Sample, batched: bool) -> dict:
    """perf_analyzer's --input-data for a descriptor's sample: a batching model (max_batch_size > 0; perf_analyzer
    -b 1 adds the batch dimension) gets one step per row of the sample, its shapes without the batch dimension;
    a model that does not batch gets one step, the sample's whole tensors."""
    if not batched:
        return {"data": [{t.name: {"content": list(t.data), "shape": list(t.shape)} for t in sample.inputs}]}
    steps = []
    for row in range(sample.inputs[0].shape[0]):
        step = {}
        for t in sample.inputs:
            size = 1
            for d in t.shape[1:]:
                size *= d
            step[t.name] = {"content": list(t.data[row * size:(row + 1) * size]), "shape": list(t.shape[1:])}
        steps.append(step)
    return {"data": steps}


def descriptor_rows(repository: Path, levels: list[int], opts: perf_analyzer.Options, out: Path, notes: list[str]
                    ) -> list[Row]:
    """A perf_analyzer row per level for every model of repository with samples (its tritonops.json) that has no
    bench of its own (DEDICATED), sending its first sample (descriptor_input_data). One server for them all."""
    from ..models import validate
    from ..serving import smoke

    try:
        descs = [d for d in smoke.descriptors_of(repository) if d.model not in DEDICATED]
    except smoke.SmokeFailure as exc:
        print(f"bench: no descriptor rows: {exc}", flush=True)
        notes.append(f"models of {repository}: not measured ({exc})")
        return []
    if not descs:
        return []
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    try:
        with LocalServer(repository, host="127.0.0.1", log_path=out / "descriptors.server.log", **ports) as server:
            for desc in descs:
                config, _ = validate.load_config(desc.path.parent / "config.pbtxt")
                batched = config is not None and config.max_batch_size > 0
                data = out / f"{desc.model}.input-data.json"
                data.write_text(json.dumps(descriptor_input_data(desc.samples[0], batched), ensure_ascii=False))
                print(f"bench: {desc.model} (its descriptor's first sample) ...", flush=True)
                points, failed = perf_analyzer.against(server, desc.model, out / f"{desc.model}.perf_analyzer.csv", opts,
                                                       concurrency=levels, extra_args=["--input-data", str(data)])
                for level, why in failed.items():
                    print(f"bench: {desc.model}: perf_analyzer gave no result at concurrency {level}: {why}", flush=True)
                    notes.append(f"{desc.model}, concurrency {level}: perf_analyzer gave no result ({why}); "
                                 "see perf_analyzer.log")
                rows += [_row(desc.model, "perf_analyzer", p, 0.0) for p in points]
    except (ServerError, perf_analyzer.PerfAnalyzerError) as exc:  # a note, not the end of the bench
        print(f"bench: the models of {repository} were not measured: {exc}", flush=True)
        notes.append(f"models of {repository}: not measured ({exc})")
    return rows


def embed_rows(levels: list[int], opts: perf_analyzer.Options, out: Path, notes: list[str]
               ) -> tuple[list[Row], dict[str, embed.Measured]]:
    """bench.embed's two variants as rows (their load times in the second value); a variant that could
    not be measured is a note, not the end of the bench."""
    try:
        found = embed.run(levels, opts, out)
    except (ServerError, perf_analyzer.PerfAnalyzerError) as exc:
        print(f"bench: embed was not measured: {exc}", flush=True)
        notes.append(f"embed: not measured ({exc})")
        return [], {}
    rows = []
    for name, measured in found.items():
        for level, why in measured.failed.items():
            print(f"bench: {name}: perf_analyzer gave no result at concurrency {level}: {why}", flush=True)
            notes.append(f"{name}, concurrency {level}: perf_analyzer gave no result ({why}); see perf_analyzer.log")
        rows += [_row(name, "perf_analyzer", p, 0.0) for p in measured.points]
    return rows, found


def through_gateway(server: LocalServer, level: int, opts: perf_analyzer.Options, out: Path, notes: list[str],
                    direct: float = 0.0) -> list[Row]:
    """The same perf_analyzer level through the gateway (this machine's haproxy, the repo's template);
    direct: that level's throughput without it (infer/s, 0 if unknown), which sizes the windows."""
    try:
        backend = gateway.Backend("linear", "127.0.0.1", server.ports["http"], server.ports["grpc"], server.ports["metrics"])
        ports = {k: free_port() for k in ("http", "grpc", "metrics", "stats")}
        with gateway.LocalGateway([backend], out / "gateway", ports, repository=server.repository) as gw:
            served, cpu = metrics.scrape(server.metrics_url, linear.MODEL)["nv_inference_request_success"], _children_cpu_s()
            points, failed = perf_analyzer.against(server, linear.MODEL, out / "linear.gateway.perf_analyzer.csv",
                                                   opts, concurrency=[level], url=gw.http_url, expected_rate=direct)
            # perf_analyzer's own CPU, as for the direct rows (haproxy is not reaped yet, so not counted)
            cpu = _children_cpu_s() - cpu
            served = metrics.scrape(server.metrics_url, linear.MODEL)["nv_inference_request_success"] - served
    except (gateway.GatewayError, perf_analyzer.PerfAnalyzerError) as exc:
        print(f"bench: the gateway was not measured: {exc}", flush=True)
        notes.append(f"linear through the gateway: not measured ({exc})")
        return []
    for lv, why in failed.items():
        notes.append(f"linear through the gateway, concurrency {lv}: perf_analyzer gave no result ({why})")
    return [_row("linear", GATEWAY_TOOL, p, cpu / served * 1e6 if served else 0.0) for p in points]


def find(rows: list[Row], model: str, tool: str = "perf_analyzer", concurrency: int = TARGET_CONCURRENCY):
    return next((r for r in rows if (r.model, r.tool, r.concurrency) == (model, tool, concurrency)), None)


def targets(rows: list[Row], target_c: int = TARGET_CONCURRENCY) -> list[tuple[str, str, str, bool]]:
    """(target, measured, wanted, met) for each ratio whose inputs were measured."""
    out = []
    lin, seed, floor = (find(rows, m, concurrency=target_c) for m in ("linear", "seed", "identity"))
    locust = find(rows, "linear", LOCUST_TOOL, target_c)
    c = f"c={target_c}"
    if lin and seed:
        ratio = lin.throughput / seed.throughput
        out.append((f"linear / seed throughput, {c}", f"{ratio:.2f}x", f">= {SPEEDUP_OVER_SEED}x", ratio >= SPEEDUP_OVER_SEED))
    if lin and floor:
        ratio = lin.throughput / floor.throughput
        out.append((f"linear / identity floor throughput, {c}", f"{ratio:.2f}x", f">= {SHARE_OF_FLOOR}x", ratio >= SHARE_OF_FLOOR))
        ratio = lin.p99_ms / floor.p99_ms
        out.append((f"linear / identity floor p99, {c}", f"{ratio:.2f}x", f"<= {P99_OVER_FLOOR}x", ratio <= P99_OVER_FLOOR))
    via = find(rows, "linear", GATEWAY_TOOL, target_c)
    if lin and via:
        ratio = via.throughput / lin.throughput
        out.append((f"gateway / direct throughput (linear), {c}", f"{ratio:.2f}x", f">= {GATEWAY_SHARE}x",
                    ratio >= GATEWAY_SHARE))
    if lin and locust:
        ratio = locust.throughput / lin.throughput
        out.append((f"Locust / perf_analyzer throughput (linear), {c}", f"{ratio:.2f}x", f">= {LOCUST_SHARE}x",
                    ratio >= LOCUST_SHARE))
    return out


def markdown(rows: list[Row], checks, header: str) -> str:
    body = loadgate.table(
        [(r.model, r.tool, str(r.concurrency), f"{r.throughput:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
          f"{r.queue_ms:.3f}", f"{r.compute_ms:.3f}", f"{r.client_cpu_us:.0f}" if r.client_cpu_us else "-",
          f"{r.avg_batch:.2f}" if r.avg_batch else "-", str(r.tries) if r.tries else "-") for r in rows],
        ("model", "load generator", "concurrency", "infer/s", "p50 ms", "p99 ms", "server queue ms",
         "server compute ms", "client CPU us/req", "avg batch", "tries"))
    parts = [header, "", body]
    if checks:
        parts += ["", loadgate.table([(n, m, w, "met" if ok else "MISSED") for n, m, w, ok in checks],
                                     ("target", "measured", "wanted", "result"))]
    return "\n".join(parts) + "\n"


def plot(rows: list[Row], path: Path, title: str) -> None:
    fig, (left, right) = plots.figure(1, 2, figsize=(11, 4.2))
    known = (*MODELS, embed.SHIPPED, embed.UNBATCHED)  # embed's infer/s are sentences/s
    others = sorted({r.model for r in rows if r.tool == "perf_analyzer"} - set(known))  # descriptor_rows
    for model in (*known, *others):
        pts = sorted((r for r in rows if r.model == model and r.tool == "perf_analyzer"), key=lambda r: r.concurrency)
        if pts:
            xs = [p.concurrency for p in pts]
            left.plot(xs, [p.throughput for p in pts], marker="o", label=model)
            right.plot(xs, [p.p99_ms for p in pts], marker="o", label=model)
    for r in rows:
        if r.tool == LOCUST_TOOL or r.tool == GATEWAY_TOOL:
            style = {"marker": "*" if r.tool == LOCUST_TOOL else "D", "markersize": 10, "linestyle": ""}
            label = f"{r.model} ({'Locust, binary' if r.tool == LOCUST_TOOL else 'through the gateway'})"
            left.plot([r.concurrency], [r.throughput], label=label, **style)
            right.plot([r.concurrency], [r.p99_ms], label=label, **style)
    levels = sorted({r.concurrency for r in rows})
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
    plots.finish((left, right), fig, path, xlabel="concurrency (perf_analyzer, HTTP, batch 1)",
                 ylabels=["throughput (infer/s)", "p99 latency (ms)"], title=title)


def knob_lines(target_c: int, out: Path, opts: perf_analyzer.Options, notes: list[str], alt_delay_us: int | None,
               alt_instances: int | None, expected_rate: float = 0.0) -> tuple[list[Row], list[str]]:
    """The config's tuning knobs, shipped then alternative back to back at target_c, one line each (bench.tuning).
    expected_rate: linear's throughput at target_c (infer/s, 0 if unknown), which sizes the windows."""
    extra, lines = [], []
    for knob in tuning.knobs(alt_delay_us, alt_instances):
        print(f"bench: linear, {knob.name} {knob.shipped} then {knob.alternative} (knob check) ...", flush=True)
        try:
            results = tuning.measure(knob, target_c, out, opts, expected_rate=expected_rate)
        except perf_analyzer.PerfAnalyzerError as exc:
            results = {w: ([], {target_c: str(exc)}) for w in ("shipped", "alternative")}
        measured = {}
        for which, value in (("shipped", knob.shipped), ("alternative", knob.alternative)):
            label = f"linear, {knob.label(value)}" + (" (shipped)" if which == "shipped" else "")
            points, failed = results[which]
            for lv, why in failed.items():
                notes.append(f"{label}, concurrency {lv}: perf_analyzer gave no result ({why})")
            extra += [_row(label, "perf_analyzer", p, 0.0) for p in points]
            measured[which] = extra[-1] if points else None
        lines.append(tuning.line(knob, measured["shipped"], measured["alternative"], target_c))
    return extra, lines


def tries_line(rows: list[Row], sweep, notes: list[str] = ()) -> str:
    """How many perf_analyzer calls each level took, in one line, then the levels that got no result."""
    parts = [f"{r.model}{' via gateway' if r.tool == GATEWAY_TOOL else ''} c{r.concurrency}: {r.tries}"
             for r in rows if r.tries]
    parts += [f"linear open loop {p.request_rate:.0f}/s: {p.tries}" for p in (sweep.points if sweep else [])]
    failed = [n.split(": perf_analyzer gave no result")[0] for n in notes if ": perf_analyzer gave no result" in n]
    return ("perf_analyzer tries per level (1 = first call measured): " + ", ".join(parts)
            + (f"; no result after all tries: {'; '.join(failed)}" if failed else ""))


def run(concurrency: list[int], opts: perf_analyzer.Options, locust_duration: str | None, out: Path,
        models: list[str], target_c: int = TARGET_CONCURRENCY,
        sweep_fractions: tuple[float, ...] = openloop.FRACTIONS,
        alt_delay_us: int | None = tuning.ALT_QUEUE_DELAY_US,
        alt_instances: int | None = tuning.ALT_INSTANCES,
        embed_levels: list[int] = list(embed.LEVELS),
        repository: Path = settings.MODEL_REPOSITORY) -> tuple[str, list[tuple[str, str, str, bool]]]:
    out.mkdir(parents=True, exist_ok=True)
    opts = replace(opts, log_path=out / "perf_analyzer.log")
    opts.log_path.unlink(missing_ok=True)
    perf_analyzer.ensure()
    load_before = os.getloadavg()
    started = time.time()
    rows: list[Row] = []
    notes: list[str] = []
    found: dict = {}
    for name in (m for m in models if m in MODELS):
        repository, what = MODELS[name]
        print(f"bench: {name} ({what}) ...", flush=True)
        rows += bench_model(name, repository, concurrency, opts, out,
                            locust_duration if name == "linear" else None, notes, target_c, sweep_fractions, found)
    knobs: list[str] = []
    if "linear" in models:
        direct = find(rows, "linear", concurrency=target_c)
        extra, knobs = knob_lines(target_c, out, opts, notes, alt_delay_us, alt_instances,
                                  direct.throughput if direct else 0.0)
        rows += extra
    embedded: dict[str, embed.Measured] = {}
    if "embed" in models:
        extra, embedded = embed_rows(embed_levels, opts, out, notes)
        rows += extra
    rows += descriptor_rows(repository, concurrency, opts, out, notes)  # models without a bench of their own
    sweep = found.get("sweep")
    load_after = os.getloadavg()
    checks = targets(rows, target_c) + embed.targets(embedded)
    header = (f"Benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, {machine()}. "
              f"perf_analyzer {settings.get('CPU_TRITON_VERSION')} over HTTP (binary tensors, batch 1, "
              f"count windows of ~{opts.measurement_ms} ms, stable within {opts.stability_pct:g}%); "
              + (f"Locust: loadtests/linear.py, {target_c} users, --batch-size 1, JSON, binary and gRPC, each measured "
                 f"over a {locust_duration} window after warm-up (client CPU: Locust's process tree / requests the "
                 f"server answered in it). " if locust_duration and "linear" in models else "Locust: not run. ")
              + f"Load average (1 min) "
              f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; run took {time.time() - started:.0f} s.")
    text = markdown(rows, checks, header)
    if embedded:
        text += "\n" + embed.summary(embedded, target_c)
    if knobs:
        text += "\nTuning knobs in model_repository/linear/config.pbtxt, measured in this run:\n\n" + "".join(
            f"- {k}\n" for k in knobs)
    if sweep:
        text += "\n" + openloop.markdown(sweep)
    text += "\n" + tries_line(rows, sweep, notes) + "\n"
    text += "".join(f"\n- {n}" for n in notes) + ("\n" if notes else "")
    (out / "bench.md").write_text(text)
    if sweep and sweep.points:
        openloop.plot(sweep, out / "bench-sweep.png", f"{linear.MODEL}: latency against offered load, "
                                                          f"{time.strftime('%Y-%m-%d', time.gmtime(started))}")
    plot(rows, out / "bench.png", f"Triton {settings.get('CPU_TRITON_VERSION')} Python backend on "
                                  f"{os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d', time.gmtime(started))}")
    return text, checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated perf_analyzer levels")
    parser.add_argument("--measurement-ms", type=int, default=DEFAULTS.measurement_ms,
                        help="what a perf_analyzer window should last (ms): it holds that long's worth of requests")
    parser.add_argument("--locust-duration", default="30s", help="Locust run at concurrency 16 on linear; 0 skips it")
    parser.add_argument("--models", default=",".join([*MODELS, "embed"]), help=f"subset of {','.join([*MODELS, 'embed'])}")
    parser.add_argument("--embed-concurrency", default=",".join(map(str, embed.LEVELS)),
                        help="perf_analyzer levels for embed, with and without dynamic batching")
    parser.add_argument("--target-concurrency", type=int, default=TARGET_CONCURRENCY,
                        help="level the target ratios compare at, and Locust's user count")
    parser.add_argument("--stability-percentage", type=float, default=DEFAULTS.stability_pct,
                        help="perf_analyzer -s: how far (max/min, %%) the last 3 windows of a level may spread")
    parser.add_argument("--tries", type=int, default=DEFAULTS.tries, help="perf_analyzer calls per level before it is failed")
    parser.add_argument("--sync", action="store_true",
                        help="closed loop with perf_analyzer's synchronous client, not --async (2.51's hangs at c=64 here)")
    parser.add_argument("--sweep-fractions", default=",".join(f"{f:g}" for f in openloop.FRACTIONS),
                        help="open-loop request rates, as fractions of linear's measured maximum; empty skips it")
    parser.add_argument("--knob-queue-delay-us", default=str(tuning.ALT_QUEUE_DELAY_US),
                        help="queue delay (us) to compare the shipped one with, at the target concurrency; empty skips")
    parser.add_argument("--knob-instances", default=str(tuning.ALT_INSTANCES),
                        help="instance count to compare the shipped one with, at the target concurrency; empty skips")
    parser.add_argument("--repository", type=Path, default=settings.MODEL_REPOSITORY,
                        help="its models with samples other than linear and embed get perf_analyzer rows at "
                             "--concurrency, sending their descriptor's first sample (one server for them)")
    parser.add_argument("--report-dir", type=Path, default=REPORTS)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    a = parser.parse_args(argv)
    try:
        levels, embed_levels = ([int(c) for c in v.split(",") if c.strip()] for v in (a.concurrency, a.embed_concurrency))
    except ValueError:
        parser.error(f"--concurrency {a.concurrency!r}, --embed-concurrency {a.embed_concurrency!r}: "
                     "expected integers like 1,4,16,64")
    if not levels or min(levels) < 1 or not embed_levels or min(embed_levels) < 1:
        parser.error(f"--concurrency {a.concurrency!r}, --embed-concurrency {a.embed_concurrency!r}: levels must be >= 1")
    try:
        fractions = tuple(float(f) for f in a.sweep_fractions.split(",") if f.strip())
        alt_delay, alt_instances = (int(v) if v.strip() else None for v in (a.knob_queue_delay_us, a.knob_instances))
    except ValueError:
        parser.error("--sweep-fractions takes numbers like 0.25,0.5; --knob-* take integers (or nothing)")
    if any(not 0 < f <= 2 for f in fractions) or a.tries < 1:
        parser.error("--sweep-fractions must lie in (0, 2]; --tries must be >= 1")
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS and m != "embed"]
    if unknown or not models:
        parser.error(f"--models {a.models!r}: unknown {unknown}; choose from {', '.join([*MODELS, 'embed'])}")
    if problem := ensure_model_files():
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        opts = perf_analyzer.Options(measurement_ms=a.measurement_ms, stability_pct=a.stability_percentage,
                                     tries=a.tries, asynchronous=not a.sync)
        text, checks = run(levels, opts, None if a.locust_duration in ("", "0") else a.locust_duration,
                           a.report_dir, models, a.target_concurrency, fractions, alt_delay, alt_instances, embed_levels,
                           a.repository)
    except (perf_analyzer.PerfAnalyzerError, loadgate.GateError, metrics.MetricsError, serverstats.StatsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    print(f"\nwrote {a.report_dir}/bench.md, bench.png{', bench-sweep.png' if fractions else ''} and the raw CSVs")
    return 1 if a.strict and not all(ok for *_, ok in checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
