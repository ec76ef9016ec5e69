"""Scrape Triton's Prometheus /metrics and turn two scrapes into the server's figures for a run.

Parsing is prometheus_client's text parser; Triton's counters are cumulative since start, so a
run's figures are the difference between a scrape before and one after.
"""
from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from .. import settings

# Per-model counters Triton exports (durations are cumulative microseconds over all requests).
COUNTERS = (
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
)


class MetricsError(RuntimeError):
    pass


def metrics_url_for(server_url: str) -> str:
    """The metrics endpoint of the server behind an HTTP URL: same host, METRICS_PORT."""
    return f"http://{settings.address_on(server_url, 'metrics')}/metrics"


def parse(text: str, model: str) -> dict[str, float]:
    """Sum of each counter's samples for one model (all versions, all failure reasons)."""
    totals = dict.fromkeys(COUNTERS, 0.0)
    for family in text_string_to_metric_families(text):
        if family.name not in totals:
            continue
        for sample in family.samples:  # the parser names counter samples <family>_total
            if sample.name in (family.name, f"{family.name}_total") and sample.labels.get("model") == model:
                totals[family.name] += sample.value
    return totals


def scrape(url: str, model: str, timeout: float = 5) -> dict[str, float]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode()
    except OSError as exc:
        raise MetricsError(f"cannot scrape {url}: {exc}") from None
    if "nv_inference_count" not in text:
        raise MetricsError(f"{url} answered, but has no nv_inference_count: is it Triton's metrics port?")
    return parse(text, model)


@dataclass(frozen=True)
class ServerFigures:
    """What the server itself saw between two scrapes."""

    success: int
    failure: int
    inferences: int  # rows: a batch-8 request counts 8
    executions: int  # model execute() calls after dynamic batching
    avg_request_us: float
    avg_queue_us: float
    avg_compute_us: float  # compute input + infer + output

    @property
    def avg_batch(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("server: successful requests", f"{self.success}"),
            ("server: failed requests", f"{self.failure}"),
            ("server: inferences (rows)", f"{self.inferences}"),
            ("server: executions", f"{self.executions}"),
            ("server: avg batch formed (inferences/executions)", f"{self.avg_batch:.2f}"),
            ("server: avg request time", f"{self.avg_request_us / 1000:.3f} ms"),
            ("server: avg queue time", f"{self.avg_queue_us / 1000:.3f} ms"),
            ("server: avg compute time", f"{self.avg_compute_us / 1000:.3f} ms"),
        ]


def difference(before: dict[str, float], after: dict[str, float]) -> ServerFigures:
    d = {k: after[k] - before[k] for k in COUNTERS}
    ok = d["nv_inference_request_success"]  # Triton adds durations for successful requests only
    per_request = (lambda us: us / ok) if ok else (lambda us: 0.0)
    compute = sum(d[f"nv_inference_compute_{p}_duration_us"] for p in ("input", "infer", "output"))
    return ServerFigures(
        success=int(d["nv_inference_request_success"]), failure=int(d["nv_inference_request_failure"]),
        inferences=int(d["nv_inference_count"]), executions=int(d["nv_inference_exec_count"]),
        avg_request_us=per_request(d["nv_inference_request_duration_us"]),
        avg_queue_us=per_request(d["nv_inference_queue_duration_us"]), avg_compute_us=per_request(compute),
    )
