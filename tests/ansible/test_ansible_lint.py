"""ansible-lint (production profile, offline) and ansible-playbook --syntax-check on every playbook."""
from __future__ import annotations

import subprocess

import pytest

from tritonops import settings

from playbook_runner import ANSIBLE_DIR, VENV_BIN, ansible_playbook

PLAYBOOKS = sorted(p.name for p in ANSIBLE_DIR.glob("*.yml"))


def test_there_are_playbooks():
    assert "site.yml" in PLAYBOOKS, f"no site.yml in {ANSIBLE_DIR}"


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_syntax_check(playbook):
    result = ansible_playbook("--syntax-check", playbook, timeout=120)
    assert result.rc == 0, result.output


def test_ansible_lint_production_profile():
    proc = subprocess.run([str(VENV_BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor",
                           "ansible/"], cwd=settings.ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr
