"""The alert rules (compose/prometheus/alerts.yml, docs/alerts.md) under promtool, Prometheus' own checker:
`promtool check rules`, the unit tests in alerts_test.yml (input series, expected alerts and their text),
and proof that every alert has a unit test that sees it fire: with its expression made never true, the
unit tests fail naming it. The compose profile's config, with the rules beside it, passes `promtool
check config`. The latency rule's number is the model SLO's default (tritonops.models.descriptor.DEFAULT_SLO).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tritonops import settings
from tritonops.models import descriptor
from tritonops.stack import compose

pytestmark = pytest.mark.promtool

RULES = compose.ALERT_RULES
UNIT_TESTS = Path(__file__).with_name("alerts_test.yml")
DOCS = settings.ROOT / "docs" / "alerts.md"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def alerts(document: dict | None = None) -> dict[str, dict]:
    groups = (document or yaml.safe_load(RULES.read_text()))["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_rules_pass_promtool_check():
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout, done.stdout


def test_unit_tests_pass():
    done = promtool("test", "rules", str(UNIT_TESTS))
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_the_issue_s_alerts_are_all_there():
    assert {"GatewayBackendDown", "Gateway5xxRatioHigh", "TritonLatencyAboveSLO", "TritonQueueTimeShareHigh",
            "TritonModelFailing", "TritonRestarted", "TLSCertificateExpiringSoon"} <= set(alerts())
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"], name


@pytest.mark.parametrize("name", sorted(alerts()))
def test_each_alert_has_a_unit_test_that_sees_it_fire(tmp_path, name):
    """The rules file with this alert's expression never true: the unit tests must fail on it."""
    document = yaml.safe_load(RULES.read_text())
    alerts(document)[name]["expr"] = "vector(0) > 1"
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(yaml.safe_dump(document))
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [f"rules/{RULES.name}"]
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(tests))
    done = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    output = done.stdout + done.stderr  # promtool writes the failures to stderr
    assert done.returncode != 0 and f"alertname: {name}," in output, output


def test_latency_threshold_is_the_model_slo():
    """The one number of TritonLatencyAboveSLO is DEFAULT_SLO's p99_ms (the rule is in ms), and no model
    of the shipped repository sets an SLO of its own, which the one rule would not know about."""
    slo = descriptor.DEFAULT_SLO["p99_ms"]
    rule = alerts()["TritonLatencyAboveSLO"]
    threshold = re.fullmatch(r'nv_inference_request_summary_us\{quantile="0\.95"\} / 1000 > ([0-9.]+)', rule["expr"].strip())
    assert threshold, f"{RULES}: TritonLatencyAboveSLO's expr is not '<p95 in ms> > <SLO>': {rule['expr']!r}"
    assert float(threshold.group(1)) == slo, f"{RULES}: TritonLatencyAboveSLO at {threshold.group(1)} ms, DEFAULT_SLO p99_ms {slo:g}"
    assert f"above the {slo:g} ms SLO" in rule["annotations"]["description"]
    own = {d.name: s["p99_ms"] for d in sorted(settings.MODEL_REPOSITORY.iterdir())
           if (d / descriptor.FILENAME).exists() and (s := descriptor.load(d).slo)["p99_ms"] != slo}
    assert not own, f"models with their own p99_ms, not covered by TritonLatencyAboveSLO ({slo:g} ms): {own}"


def test_compose_config_loads_the_rules(tmp_path):
    """What the monitoring profile mounts: the rendered prometheus.yml with alerts.yml beside it."""
    config = compose.prometheus_config(compose.environment())
    assert yaml.safe_load(config)["rule_files"] == [RULES.name]
    mount = f"./prometheus/{RULES.name}:/etc/prometheus/{RULES.name}:ro"
    assert mount in compose.BASE_FILE.read_text(), f"{compose.BASE_FILE}: no {mount}"
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(RULES, tmp_path / RULES.name)
    done = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0 and "SUCCESS: 1 rule files found" in done.stdout, done.stdout + done.stderr


def test_docs_list_every_alert():
    text = DOCS.read_text()
    missing = [name for name in alerts() if f"`{name}`" not in text]
    assert not missing, f"{DOCS} does not name {missing}"
