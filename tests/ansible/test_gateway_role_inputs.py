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
                            "-e", json.dumps({"tritonops_repo_root": str(settings.ROOT), **(extra or {})}),
                            log=LOGS / f"gateway-role-{tmp_path.name}.log", timeout=300)


@pytest.mark.parametrize("gpu_hosts, extra, said", [
    ({}, {}, "The gateway on gw-local has no backends: the inventory group gpu_hosts"),
    ({"gpu1": {"ansible_host": "192.0.2.10", "triton_gateway_tls_cert": "/etc/cert.pem"}}, {},
     "triton_gateway_tls_cert or triton_gateway_api_keys is set on a host of gpu_hosts"),
    ({"gpu1": {"ansible_host": "192.0.2.10", "triton_gateway_api_keys": ["k"]}}, {},
     "triton_gateway_tls_cert or triton_gateway_api_keys is set on a host of gpu_hosts"),
    ({"gpu1": {"ansible_host": "192.0.2.10"}}, {"gateway_tls_cert": "/etc/cert.pem"},
     "gateway_tls_cert (/etc/cert.pem) and gateway_tls_key () go together"),
], ids=["no-backends", "tls-on-a-gpu-host", "keys-on-a-gpu-host", "cert-without-key"])
def test_gateway_role_names_what_is_wrong(tmp_path, gpu_hosts, extra, said):
    result = gateway_play(tmp_path, gpu_hosts, extra)
    assert result.rc != 0, result.output[-3000:]
    assert said in " ".join(result.output.split()), result.output[-3000:]
    assert "Install HAProxy" not in result.output  # stopped before changing anything
