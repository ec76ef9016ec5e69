"""TLSCertificateExpiringSoon against the real parts (docs/alerts.md): Debian's blackbox exporter probes the
gateway's TLS port (this machine's HAProxy with the project's config and a certificate valid for one day)
and a TLS port whose certificate is valid for 30 days; this machine's Prometheus 2.42 scrapes both probes
and evaluates compose/prometheus/alerts.yml. The exporter's probe_ssl_earliest_cert_expiry is each
certificate's notAfter, and the rule's expression holds (the alert is pending: its `for:` is 10 minutes)
for the gateway's certificate only. Nothing here deploys a blackbox exporter; this is the recipe."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from certs import self_signed
from gateway_harness import backend, serve, start_gateway

from tritonops.stack import compose
from tritonops.serving.server import free_port

pytestmark = [pytest.mark.promtool, pytest.mark.blackbox]
ALERT = "TLSCertificateExpiringSoon"
# The blackbox module and scrape job an operator adds to arm the rule (docs/alerts.md shows them).
BLACKBOX_MODULES = {"modules": {"tls_connect": {"prober": "tcp", "timeout": "5s", "tcp": {
    "tls": True, "tls_config": {"insecure_skip_verify": True}}}}}  # expiry is read, not trust


def not_after(cert: Path) -> float:
    end = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", str(cert)], capture_output=True, text=True,
                         check=True).stdout.strip().removeprefix("notAfter=")
    return datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc).timestamp()


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def probed(haproxy, tmp_path_factory):
    """{target: certificate} for the gateway (1 day) and the control (30 days), and Prometheus' URL."""
    work = tmp_path_factory.mktemp("tls-expiry")
    short = self_signed(work / "short")
    longer = work / "long"
    longer.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=localhost",
                    "-keyout", str(longer / "key.pem"), "-out", str(longer / "cert.pem")], check=True, capture_output=True)
    triton = serve(work / "triton.log")
    procs: list[subprocess.Popen] = []
    gw = None
    try:
        gw = start_gateway([backend("a", triton)], work / "gateway", tls_pem=str(short.pem))
        control = f"127.0.0.1:{free_port()}"
        procs.append(start(["openssl", "s_server", "-quiet", "-accept", control, "-cert", str(longer / "cert.pem"),
                            "-key", str(longer / "key.pem")], work / "s_server.log"))
        blackbox = f"127.0.0.1:{free_port()}"
        (work / "blackbox.yml").write_text(yaml.safe_dump(BLACKBOX_MODULES))
        procs.append(start(["prometheus-blackbox-exporter", f"--config.file={work / 'blackbox.yml'}",
                            f"--web.listen-address={blackbox}"], work / "blackbox.log"))
        targets = {gw.http_url: short.cert, control: longer / "cert.pem"}
        shutil.copy(compose.ALERT_RULES, work / "alerts.yml")
        (work / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{
                "job_name": "gateway_tls", "metrics_path": "/probe", "params": {"module": ["tls_connect"]},
                "static_configs": [{"targets": list(targets)}],
                "relabel_configs": [{"source_labels": ["__address__"], "target_label": "__param_target"},
                                    {"source_labels": ["__param_target"], "target_label": "instance"},
                                    {"target_label": "__address__", "replacement": blackbox}]}]}))
        checked = subprocess.run(["promtool", "check", "config", str(work / "prometheus.yml")], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        prometheus = f"127.0.0.1:{free_port()}"
        procs.append(start(["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                            f"--web.listen-address={prometheus}"], work / "prometheus.log"))
        yield targets, f"http://{prometheus}"
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if gw:
            gw.stop()
        triton.stop()


def test_the_rule_holds_for_the_certificate_expiring_within_14_days(probed):
    targets, prometheus = probed
    deadline, expiry, pending = time.monotonic() + 60, {}, []
    while time.monotonic() < deadline:
        try:
            result = get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": "probe_ssl_earliest_cert_expiry"}))
            expiry = {r["metric"]["instance"]: float(r["value"][1]) for r in result["data"]["result"]}
            pending = [a for a in get(f"{prometheus}/api/v1/alerts")["data"]["alerts"] if a["labels"]["alertname"] == ALERT]
        except OSError:
            pass  # Prometheus still starting
        if len(expiry) == len(targets) and pending:
            break
        time.sleep(1)
    assert expiry == {target: not_after(cert) for target, cert in targets.items()}, expiry
    gateway = next(iter(targets))
    assert [(a["labels"]["instance"], a["state"]) for a in pending] == [(gateway, "pending")], pending
    days = (expiry[gateway] - time.time()) / 86400
    print(f"\n{ALERT}: pending for {gateway} ({days:.2f} days left); not for the control ({(expiry[next(reversed(targets))] - time.time()) / 86400:.1f} days)")
