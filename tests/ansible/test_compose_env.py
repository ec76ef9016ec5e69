"""The triton role's compose.env (templates/compose.env.j2, rendered by Ansible's template module on this
machine, no host needed) gives compose the same stop grace period as `make up`'s env file: Triton's exit
timeout plus the margin, also when a host sets its own exit timeout (triton_compose_env)."""
from __future__ import annotations

import json
import sys

import pytest

from tritonops import compose, settings

from playbook_runner import ANSIBLE_DIR, LOGS, ansible_playbook

ROLE = ANSIBLE_DIR / "roles" / "triton"


def role_env(tmp_path, compose_env: dict[str, str]) -> dict[str, str]:
    playbook = tmp_path / "compose-env.yml"
    playbook.write_text(json.dumps([{
        "name": "Render the triton role's compose.env", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(ANSIBLE_DIR / "group_vars" / "all.yml"), str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "tasks": [{"name": "The role's template", "ansible.builtin.template": {
            "src": str(ROLE / "templates" / "compose.env.j2"), "dest": str(tmp_path / "compose.env"), "mode": "0644"}}]}]))
    variables = {"tritonops_repo_root": str(settings.ROOT), "triton_release_dir": str(tmp_path / "release"),
                 "triton_compose_env": compose_env, "ansible_python_interpreter": sys.executable}
    result = ansible_playbook("-i", "localhost,", str(playbook), "-e", json.dumps(variables),
                              log=LOGS / f"compose-env-{tmp_path.name}.log", timeout=120)
    assert result.rc == 0, result.output[-4000:]
    return settings.parse_env_file(tmp_path / "compose.env")


@pytest.mark.parametrize("host_timeout", [None, "95"], ids=["versions.env", "host"])
def test_role_and_make_up_derive_the_same_stop_grace_period(tmp_path, host_timeout):
    overrides = {"TRITON_EXIT_TIMEOUT_SECS": host_timeout} if host_timeout else {}
    ours = role_env(tmp_path, overrides)
    theirs = settings.parse_env_file(compose.write_env(tmp_path / "make-up.env", overrides))
    timeout = int(host_timeout or settings.get("TRITON_EXIT_TIMEOUT_SECS"))
    assert ours["TRITON_EXIT_TIMEOUT_SECS"] == str(timeout)
    assert ours["TRITON_STOP_GRACE_PERIOD"] == theirs["TRITON_STOP_GRACE_PERIOD"] == f"{timeout + compose.STOP_MARGIN_SECS}s"
