"""`tritonops prometheus-config`, the Ansible prometheus role's controller step: bad targets are refused
with the job and the value named, and nothing is printed for the role to install."""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tritonops import settings

CLI = settings.ROOT / ".venv" / "bin" / "tritonops"


def render(stdin: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), "prometheus-config", *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_targets_become_labelled_static_targets_with_the_rule_file():
    done = render(json.dumps({"targets": {"triton": [["gpu1", "10.0.0.5", 8002]], "gateway": [["gw", "", 8404]]}}),
                  "--rule-file", "/etc/prometheus/rules.yml")
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    assert [c["static_configs"] for c in config["scrape_configs"]] == [
        [{"targets": ["10.0.0.5:8002"], "labels": {"host": "gpu1"}}], [{"targets": ["gw:8404"], "labels": {"host": "gw"}}]]


@pytest.mark.parametrize("targets,fragment", [
    ({"triton": [["gpu1", "10.0.0.5"]]}, "targets.triton: expected [[name, address, port], ...]"),
    ({"triton": [["gpu1", "10.0.0.5", "metrics"]]}, "'metrics'"),
    ({"grafana": []}, "unknown job(s) ['grafana']"),
], ids=["no-port", "port-not-a-number", "unknown-job"])
def test_bad_targets_are_refused_naming_the_job_and_value(targets, fragment):
    done = render(json.dumps({"targets": targets}))
    assert done.returncode == 1 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.startswith("prometheus-config: ") and fragment in done.stderr, done.stderr


def test_a_document_without_targets_is_refused():
    done = render(json.dumps([["gpu1", "10.0.0.5", 8002]]))
    assert done.returncode == 1 and "expected {\"targets\"" in done.stderr, done.stderr
