"""The canary analysis (issue 28 item 2): promote or abort, from per-server figures over one window.

A pure decision: `decide(canary, baseline, thresholds)` reads figures and returns the verdict with its
reasons; it starts nothing and reads no clock. The figures come from HAProxy's Prometheus exporter (the
gateway's stats port, /metrics), scraped at the start and at the end of the window: `figures(before,
after, proxy)` turns two scrapes into one `ServerFigures` per server. The answer checks (tritonops.serving.prober,
comparing canary and baseline answers) add their counts to the canary's figures (`with_answers`).

Thresholds are versions.env's CANARY_* keys (`Thresholds.from_settings`); the defaults there are
documented beside them. The deploy strategy that acts on the verdict is not here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from .. import settings


class CanaryError(ValueError):
    pass


@dataclass(frozen=True)
class ServerFigures:
    """One server's figures over the window: HTTP answers, those that were 5xx, the mean response time
    HAProxy reports at the window's end (its average over the server's last 1024 answers), and the answer
    checks sent to it alone and how many of their answers differed from the baseline's."""
    server: str
    requests: float
    errors: float
    mean_response_ms: float | None
    answer_checks: int = 0
    answer_mismatches: int = 0

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Thresholds:
    min_requests: int               # answers the canary must have served for a verdict on its figures
    max_error_ratio_delta: float    # canary error ratio - baseline's, at most
    max_latency_ratio: float        # canary mean response time / baseline's, at most ...
    min_latency_delta_ms: float     # ... unless the difference is below this (noise at millisecond scale)
    max_answer_mismatches: int      # answers that differ from the baseline's, at most

    @classmethod
    def from_settings(cls, values: dict[str, str] | None = None) -> "Thresholds":
        values = values if values is not None else settings.versions()
        keys = {"min_requests": ("CANARY_MIN_REQUESTS", int), "max_error_ratio_delta": ("CANARY_MAX_ERROR_RATIO_DELTA", float),
                "max_latency_ratio": ("CANARY_MAX_LATENCY_RATIO", float),
                "min_latency_delta_ms": ("CANARY_MIN_LATENCY_DELTA_MS", float),
                "max_answer_mismatches": ("CANARY_MAX_ANSWER_MISMATCHES", int)}
        parsed = {}
        for name, (key, kind) in keys.items():
            raw = values.get(key)
            try:
                parsed[name] = kind(raw)
            except (TypeError, ValueError):
                raise CanaryError(f"{settings.VERSIONS_FILE}: {key}={raw!r}: expected a {kind.__name__} >= 0") from None
            if parsed[name] < 0:
                raise CanaryError(f"{settings.VERSIONS_FILE}: {key}={raw!r}: expected a {kind.__name__} >= 0")
        if parsed["max_latency_ratio"] < 1:
            raise CanaryError(f"{settings.VERSIONS_FILE}: CANARY_MAX_LATENCY_RATIO={values['CANARY_MAX_LATENCY_RATIO']!r}: "
                              "expected >= 1 (a canary as fast as the baseline must pass)")
        return cls(**parsed)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str]              # why it aborts; empty when it promotes
    canary: ServerFigures
    baseline: ServerFigures         # the other servers together
    thresholds: Thresholds
    checks: list[str] = field(default_factory=list)  # every comparison made, passed or not (for the report)

    @property
    def verdict(self) -> str:
        return "promote" if self.promote else "abort"


def with_answers(figures: ServerFigures, checks: int, mismatches: int) -> ServerFigures:
    """The canary's figures with the prober's answer checks (tritonops.serving.prober) added."""
    return dataclasses.replace(figures, answer_checks=figures.answer_checks + checks,
                               answer_mismatches=figures.answer_mismatches + mismatches)


def pooled(servers: list[ServerFigures], name: str = "baseline") -> ServerFigures:
    """Several servers as one: answers and errors summed, mean response time weighted by answers."""
    timed = [s for s in servers if s.mean_response_ms is not None and s.requests > 0]
    weight = sum(s.requests for s in timed)
    return ServerFigures(name, sum(s.requests for s in servers), sum(s.errors for s in servers),
                         sum(s.mean_response_ms * s.requests for s in timed) / weight if weight else None,
                         sum(s.answer_checks for s in servers), sum(s.answer_mismatches for s in servers))


def decide(canary: ServerFigures, baseline: list[ServerFigures], thresholds: Thresholds) -> Decision:
    """Promote only when every check passes; a canary without enough answers to judge is aborted."""
    if not baseline:
        raise CanaryError("no baseline server to compare the canary with")
    base = pooled(baseline)
    reasons, checks = [], []

    def check(ok: bool, text: str) -> None:
        checks.append(f"{'ok' if ok else 'FAIL'}: {text}")
        if not ok:
            reasons.append(text)

    check(canary.requests >= thresholds.min_requests,
          f"canary answered {canary.requests:.0f} requests (at least {thresholds.min_requests} to judge)")
    check(canary.answer_mismatches <= thresholds.max_answer_mismatches,
          f"{canary.answer_mismatches} of {canary.answer_checks} answer checks differ from the baseline "
          f"(at most {thresholds.max_answer_mismatches})")
    delta = canary.error_ratio - base.error_ratio
    check(delta <= thresholds.max_error_ratio_delta,
          f"error ratio {canary.error_ratio:.4f} against the baseline's {base.error_ratio:.4f} "
          f"(at most {thresholds.max_error_ratio_delta:g} above)")
    if canary.mean_response_ms is None or base.mean_response_ms is None:
        check(False, "no mean response time for the canary or the baseline (no successful answer in the window)")
    else:
        slower = canary.mean_response_ms - base.mean_response_ms
        limit = base.mean_response_ms * thresholds.max_latency_ratio
        check(canary.mean_response_ms <= limit or slower < thresholds.min_latency_delta_ms,
              f"mean response time {canary.mean_response_ms:.1f} ms against the baseline's {base.mean_response_ms:.1f} ms "
              f"(at most x{thresholds.max_latency_ratio:g}, or less than {thresholds.min_latency_delta_ms:g} ms slower)")
    return Decision(not reasons, reasons, canary, base, thresholds, checks)


def _samples(text: str, proxy: str) -> dict[str, dict[str, float]]:
    """{server: {"requests", "errors", "mean_s"}} of one backend, from one exporter scrape."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("proxy") != proxy or "server" not in s.labels:
                continue
            row = out.setdefault(s.labels["server"], {"requests": 0.0, "errors": 0.0, "mean_s": 0.0})
            if s.name == "haproxy_server_http_responses_total":
                row["requests"] += s.value
                row["errors"] += s.value if s.labels.get("code") == "5xx" else 0.0
            elif s.name == "haproxy_server_response_time_average_seconds":
                row["mean_s"] = s.value
    return out


def figures(before: str, after: str, proxy: str = "triton_http") -> dict[str, ServerFigures]:
    """Each server's figures over the window between two scrapes of HAProxy's /metrics (exporter text)."""
    start, end = _samples(before, proxy), _samples(after, proxy)
    if not end:
        raise CanaryError(f"no haproxy_server_* series of backend {proxy!r} in the scrape at the window's end")
    out = {}
    for server, last in end.items():
        first = start.get(server, {"requests": 0.0, "errors": 0.0})
        requests, errors = last["requests"] - first["requests"], last["errors"] - first["errors"]
        if requests < 0 or errors < 0:
            raise CanaryError(f"server {server}: counters went back ({first} -> {last}): the gateway restarted "
                              "within the window; run the analysis again")
        out[server] = ServerFigures(server, requests, errors, last["mean_s"] * 1000 if requests > errors else None)
    return out
