"""The canary decision (tritonops/serving/canary.py): a pure function of per-server figures and thresholds.

On recorded figures (tests/canary/recorded/, real HAProxy exporter scrapes from this machine's gateway in
front of two wheel tritonservers; tests/canary/record_figures.py re-records them): a healthy canary is
promoted, one whose model fails and one made ~3x slower are aborted, each for its own reason. On figures
made here: each threshold's edge, the settings' errors, and the figures taken from two scrapes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonops import settings
from tritonops.serving import canary

RECORDED = Path(__file__).with_name("recorded")
DEFAULTS = canary.Thresholds.from_settings()


def recorded(scenario: str) -> tuple[dict, dict[str, canary.ServerFigures]]:
    record = json.loads((RECORDED / f"{scenario}.json").read_text())
    return record, canary.figures(record["before"], record["after"])


def decide_recorded(scenario: str) -> canary.Decision:
    record, servers = recorded(scenario)
    decision = canary.decide(servers[record["canary"]], [servers[b] for b in record["baseline"]], DEFAULTS)
    print(f"\n{scenario} (recorded {record['recorded']}, client statuses {record['client_statuses']}): "
          f"{decision.verdict}\n  " + "\n  ".join(decision.checks))
    return decision


def test_recorded_figures_match_what_the_clients_saw():
    """The exporter's answers per server add up to the client's requests (the gateway retries a failed
    connection elsewhere, so never fewer), and the 5xx to the client's 5xx at most."""
    for path in sorted(RECORDED.glob("*.json")):
        record, servers = recorded(path.stem)
        sent = sum(record["client_statuses"].values())
        answered = sum(s.requests for s in servers.values())
        assert sent <= answered <= sent * 1.01, (path.name, sent, answered)
        client_5xx = sum(n for code, n in record["client_statuses"].items() if code.startswith("5"))
        assert sum(s.errors for s in servers.values()) >= client_5xx, (path.name, servers)


def test_recorded_good_canary_is_promoted():
    decision = decide_recorded("good")
    assert decision.promote and decision.reasons == [], decision.checks


def test_recorded_failing_canary_is_aborted_on_errors():
    decision = decide_recorded("failing")
    assert not decision.promote
    assert any(r.startswith("error ratio") for r in decision.reasons), decision.reasons
    assert decision.canary.error_ratio > 0 and decision.baseline.errors == 0, decision


def test_recorded_slow_canary_is_aborted_on_latency():
    decision = decide_recorded("slow")
    assert not decision.promote
    assert [r for r in decision.reasons if r.startswith("mean response time")] == decision.reasons, decision.reasons
    assert decision.canary.mean_response_ms > 2 * decision.baseline.mean_response_ms, decision


def figures(server="gpu2", requests=1000, errors=0, ms=4.0, checks=10, mismatches=0):
    return canary.ServerFigures(server, requests, errors, ms, checks, mismatches)


THRESHOLDS = canary.Thresholds(min_requests=50, max_error_ratio_delta=0.005, max_latency_ratio=1.5,
                               min_latency_delta_ms=2, max_answer_mismatches=0)


@pytest.mark.parametrize("canary_figures, reason", [
    (figures(), None),
    (figures(requests=49), "canary answered 49 requests"),
    (figures(errors=5), None),                                  # 0.005 above the baseline's 0: at the limit
    (figures(errors=6), "error ratio 0.0060"),
    (figures(ms=6.0), None),                                    # x1.5 of 4 ms: at the limit
    (figures(ms=6.1), "mean response time 6.1 ms"),
    (figures(ms=1.5), None),                                    # faster
    (figures(mismatches=1), "1 of 10 answer checks differ"),
    (figures(ms=None), "no mean response time"),
])
def test_each_threshold_at_its_edge(canary_figures, reason):
    decision = canary.decide(canary_figures, [figures("gpu1"), figures("gpu3")], THRESHOLDS)
    assert decision.promote is (reason is None), decision.checks
    assert [r for r in decision.reasons if r.startswith(reason)] == decision.reasons if reason else decision.reasons == []


def test_small_latency_differences_pass_as_noise():
    """x3 of a 0.5 ms baseline is 1 ms slower: under CANARY_MIN_LATENCY_DELTA_MS, promoted."""
    assert canary.decide(figures(ms=1.5), [figures("gpu1", ms=0.5)], THRESHOLDS).promote
    assert not canary.decide(figures(ms=3.0), [figures("gpu1", ms=0.5)], THRESHOLDS).promote


def test_the_baseline_is_the_other_servers_pooled():
    """Errors over answers of all of them; mean response time weighted by answers."""
    base = canary.pooled([figures("gpu1", requests=100, errors=1, ms=2.0), figures("gpu3", requests=300, errors=0, ms=6.0)])
    assert (base.requests, base.errors, base.error_ratio, base.mean_response_ms) == (400, 1, 0.0025, 5.0)
    with pytest.raises(canary.CanaryError, match="no baseline server"):
        canary.decide(figures(), [], THRESHOLDS)


def test_thresholds_come_from_versions_env():
    values = settings.versions()
    assert DEFAULTS == canary.Thresholds(int(values["CANARY_MIN_REQUESTS"]), float(values["CANARY_MAX_ERROR_RATIO_DELTA"]),
                                         float(values["CANARY_MAX_LATENCY_RATIO"]), float(values["CANARY_MIN_LATENCY_DELTA_MS"]),
                                         int(values["CANARY_MAX_ANSWER_MISMATCHES"]))


@pytest.mark.parametrize("key, value, message", [
    ("CANARY_MIN_REQUESTS", "many", "CANARY_MIN_REQUESTS='many': expected a int >= 0"),
    ("CANARY_MAX_ERROR_RATIO_DELTA", "-0.1", "CANARY_MAX_ERROR_RATIO_DELTA='-0.1': expected a float >= 0"),
    ("CANARY_MAX_LATENCY_RATIO", "0.9", "CANARY_MAX_LATENCY_RATIO='0.9': expected >= 1"),
    ("CANARY_MAX_ANSWER_MISMATCHES", None, "CANARY_MAX_ANSWER_MISMATCHES=None"),
])
def test_bad_thresholds_are_named(key, value, message):
    values = {**settings.versions(), key: value}
    if value is None:
        del values[key]
    with pytest.raises(canary.CanaryError, match="versions.env: " + message.replace("(", r"\(")):
        canary.Thresholds.from_settings(values)


EXPORTER = """# HELP haproxy_server_http_responses_total Total number of HTTP responses
# TYPE haproxy_server_http_responses_total counter
haproxy_server_http_responses_total{{proxy="triton_http",server="gpu1",code="2xx"}} {ok1}
haproxy_server_http_responses_total{{proxy="triton_http",server="gpu1",code="5xx"}} {bad1}
haproxy_server_http_responses_total{{proxy="triton_grpc",server="gpu1",code="2xx"}} 999999
# HELP haproxy_server_response_time_average_seconds Avg. response time for last 1024 successful connections.
# TYPE haproxy_server_response_time_average_seconds gauge
haproxy_server_response_time_average_seconds{{proxy="triton_http",server="gpu1"}} {avg}
"""


def test_figures_are_the_window_between_two_scrapes():
    before = EXPORTER.format(ok1=100, bad1=2, avg=0.001)
    after = EXPORTER.format(ok1=350, bad1=7, avg=0.004)
    assert canary.figures(before, after) == {"gpu1": canary.ServerFigures("gpu1", 255, 5, 4.0)}
    with pytest.raises(canary.CanaryError, match="counters went back"):
        canary.figures(after, before)
    with pytest.raises(canary.CanaryError, match="no haproxy_server_\\* series of backend 'triton_web'"):
        canary.figures(before, after, proxy="triton_web")
