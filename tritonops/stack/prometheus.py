"""Prometheus' scrape config: the one renderer for `make up`'s monitoring profile and the Ansible
prometheus role (which runs `tritonops prometheus-config` on the controller, as the triton role runs
`tritonops host-files`).

Two jobs, `triton` (Triton's /metrics, relayed by each host's gateway on METRICS_PORT) and `gateway`
(HAProxy's exporter on GATEWAY_STATS_PORT). Every target is labelled host=<name>, the Grafana
dashboard's host variable: the inventory name in a fleet, the compose service's name on one host.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import settings

JOBS = ("triton", "gateway")
# Rules are evaluated at this interval; the alert drill's bound is its `for:` plus one evaluation.
EVALUATION_INTERVAL = "15s"


class PrometheusConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    host: str  # the label (inventory name or compose service)
    address: str  # host:port, an IPv6 address in brackets


def _static(targets: list[Target]) -> dict:
    return {"static_configs": [{"targets": [t.address], "labels": {"host": t.host}} for t in targets]}


def _replicas(service: str, port: int, refresh: str) -> dict:
    """Every replica of a compose service, found by the name's DNS A records: a static service:PORT
    would scrape whichever replica the name resolved to, mixing their counters (and faking restarts)."""
    return {"dns_sd_configs": [{"names": [service], "type": "A", "port": port, "refresh_interval": refresh}],
            "relabel_configs": [{"target_label": "host", "replacement": service}]}


def config(jobs: dict[str, dict], scrape_interval: str, rule_files: list[str]) -> str:
    """The config as YAML; jobs maps each of JOBS to its discovery (static or DNS)."""
    unknown = sorted(set(jobs) - set(JOBS))
    if unknown:
        raise PrometheusConfigError(f"unknown job(s) {unknown}: this config has {list(JOBS)}")
    document = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": EVALUATION_INTERVAL}}
    if rule_files:
        document["rule_files"] = list(rule_files)
    document["scrape_configs"] = [{"job_name": job, **jobs.get(job, {"static_configs": []})} for job in JOBS]
    # JSON is YAML too: Prometheus reads it, and no YAML writer becomes a runtime dependency.
    return json.dumps(document, indent=2) + "\n"


def compose_config(values: dict[str, str]) -> str:
    """The monitoring profile's: every triton replica and the gateway service; alerts.yml is mounted
    beside the config (a relative rule file is read from the config's folder)."""
    interval = values["PROMETHEUS_SCRAPE_INTERVAL"]
    return config({"triton": _replicas("triton", int(values["METRICS_PORT"]), interval),
                   "gateway": _static([Target("gateway", f"gateway:{int(values['GATEWAY_STATS_PORT'])}")])},
                  interval, ["alerts.yml"])


def fleet_config(targets: dict[str, list], scrape_interval: str, rule_files: list[str]) -> str:
    """A monitoring host's: targets maps a job to [[inventory name, address (empty: the name), port], ...]."""
    jobs = {}
    for job, entries in targets.items():
        try:
            jobs[job] = _static([Target(str(host), settings.host_port(str(address or host), int(port)))
                                 for host, address, port in entries])
        except (TypeError, ValueError) as exc:
            raise PrometheusConfigError(f"targets.{job}: expected [[name, address, port], ...], got {entries!r} ({exc})") from None
    return config(jobs, scrape_interval, rule_files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tritonops prometheus-config",
        description="Print a monitoring host's Prometheus config (the Ansible prometheus role's controller step). "
                    'Reads {"targets": {"triton": [[NAME, ADDRESS, PORT], ...], "gateway": [...]}} as JSON.')
    parser.add_argument("--targets", type=Path, default=Path("-"), metavar="JSON", help="the targets' JSON file (- reads stdin)")
    parser.add_argument("--scrape-interval", default=settings.get("PROMETHEUS_SCRAPE_INTERVAL"),
                        help="time between scrapes (versions.env PROMETHEUS_SCRAPE_INTERVAL)")
    parser.add_argument("--rule-file", action="append", default=[], help="a rule file path on the monitoring host; repeatable")
    args = parser.parse_args(argv)
    try:
        document = json.load(sys.stdin if str(args.targets) == "-" else args.targets.open())
        if not isinstance(document, dict) or not isinstance(document.get("targets"), dict):
            raise PrometheusConfigError(f"--targets {args.targets}: expected {{\"targets\": {{job: [...]}}}}")
        print(fleet_config(document["targets"], args.scrape_interval, args.rule_file), end="")
    except (PrometheusConfigError, OSError, json.JSONDecodeError) as exc:
        print(f"prometheus-config: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
