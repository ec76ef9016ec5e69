"""The gateway role refuses a fleet it cannot serve, naming the variable, before it installs anything:
run against this machine in check mode (connection local; should a check regress, nothing changes here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tritonops import settings

from playbook_runner import LOGS, ansible_playbook

GATEWAY = "gw-local"


def gateway_play(tmp_path: Path, gpu_hosts: dict, extra: dict | None = None):
    inventory = {"gpu_hosts": {"hosts": gpu_hosts},
                 "gateways": {"hosts": {GATEWAY: {"ansible_connection": "local", "ansible_become": False,
                                                  "ansible_python_interpreter": sys.executable}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    return ansible_playbook("-i", str(tmp_path / "inventory.yml"), "site.yml", "--limit", GATEWAY, "--tags", "gateway", "--check",
                            "-e", json.dumps({"tritonops_repo_root": str(settings.ROOT), "gateway_insecure_allow": True, **(extra or {})}),
                            log=LOGS / f"gateway-role-{tmp_path.name}.log", timeout=300)


@pytest.mark.parametrize("gpu_hosts, extra, said", [
    ({}, {}, "The gateway on gw-local has no backends: the inventory group gpu_hosts"),
    ({"gpu1": {"ansible_host": "192.0.2.10", "triton_gateway_tls_cert": "/etc/cert.pem"}}, {},
     "triton_gateway_tls_cert or triton_gateway_api_keys is set on a host of gpu_hosts"),
    ({"gpu1": {"ansible_host": "192.0.2.10", "triton_gateway_api_keys": ["k"]}}, {},
     "triton_gateway_tls_cert or triton_gateway_api_keys is set on a host of gpu_hosts"),
    ({"gpu1": {"ansible_host": "192.0.2.10"}}, {"gateway_tls_cert": "/etc/cert.pem"},
     "gateway_tls_cert (/etc/cert.pem) and gateway_tls_key () go together"),
    ({"gpu1": {"ansible_host": "192.0.2.10"}}, {"gateway_insecure_allow": False},
     "The gateway on gw-local would serve the fleet to anyone: set gateway_tls_cert and gateway_tls_key (TLS) and "
     "gateway_api_keys (at least one key of 32+ characters), or set gateway_insecure_allow: true to serve plain and open "
     "on purpose (got TLS off, 0 API key(s))"),
    ({"gpu1": {"ansible_host": "192.0.2.10"}}, {"gateway_insecure_allow": False, "gateway_api_keys": ["k" * 32]},
     "(got TLS off, 1 API key(s))"),
], ids=["no-backends", "tls-on-a-gpu-host", "keys-on-a-gpu-host", "cert-without-key", "open-by-default", "keys-without-tls"])
def test_gateway_role_names_what_is_wrong(tmp_path, gpu_hosts, extra, said):
    result = gateway_play(tmp_path, gpu_hosts, extra)
    assert result.rc != 0, result.output[-3000:]
    assert said in " ".join(result.output.split()), result.output[-3000:]
    assert "Install HAProxy" not in result.output  # stopped before changing anything


def test_an_open_gateway_allowed_on_purpose_warns(tmp_path):
    """gateway_insecure_allow: true passes the closed-default check and prints the warning (the play then
    stops at the next check here: no backends)."""
    result = gateway_play(tmp_path, {}, {"gateway_insecure_allow": True})
    out = " ".join(result.output.split())
    assert "WARNING: the gateway on gw-local runs with TLS off and 0 API key(s) because gateway_insecure_allow is true" in out, out[-3000:]
    assert "The gateway on gw-local has no backends" in out, out[-3000:]
