"""The Makefile's user verbs are `tritonops <command>` and nothing else; every command answers --help."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from tritonops import settings
from tritonops.stack import playbook
from tritonops.cli import COMMANDS

# make help's targets that bootstrap the checkout, build the docs or run the tests: they call pip, mkdocs, pytest or the test
# harness (tests/ansible/testhost.py), not tritonops. Every other target in make help is a user verb.
DEV_TARGETS = {"help", "venv", "lock", "lint", "actionlint", "test", "test-fast", "test-host", "test-fleet", "testhost-shell", "clean", "docs"}
TRITONOPS = ".venv/bin/tritonops"


def make(*args: str) -> str:
    done = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", *args], cwd=settings.ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def recipe(*args: str) -> list[list[str]]:
    """The commands `make -n` would run, each split as the shell would."""
    return [shlex.split(line) for line in make("-n", *args).replace("\\\n", " ").splitlines() if line.strip()]


def user_verbs() -> list[str]:
    targets = re.findall(r"^\s+(?:\x1b\[1m)?([a-z-]+)", make("help"), flags=re.M)
    assert DEV_TARGETS <= set(targets), f"DEV_TARGETS names targets make help lacks: {DEV_TARGETS - set(targets)}"
    return sorted(set(targets) - DEV_TARGETS)


def test_every_user_verb_in_make_help_runs_one_tritonops_command():
    verbs = user_verbs()
    assert {"serve", "smoke", "validate", "up", "deploy", "rollback", "loadtest", "bench"} <= set(verbs)
    for verb in verbs:
        commands = recipe(verb)
        assert [c[:1] for c in commands] == [[TRITONOPS]], f"make {verb} runs {commands}, not one {TRITONOPS} <command>"
        assert commands[0][1] in COMMANDS, f"make {verb} runs `tritonops {commands[0][1]}`, not a command of cli.py"


def test_make_deploy_variables_reach_ansible_playbook():
    """HOST, SERIAL, TAGS, INVENTORY and EXTRA of make deploy, as tritonops deploy hands them to ansible-playbook."""
    [command] = recipe("deploy", "HOST=gpu1", "SERIAL=2", "TAGS=triton", "INVENTORY=inv.yml", "EXTRA=-e k=v --check")
    assert command[:2] == [TRITONOPS, "deploy"]
    argv = playbook.command("deploy", command[2:])
    assert argv[1:] == ["-i", "inv.yml", "-e", "tritonops_serial=2", str(settings.ROOT / "ansible" / "site.yml"),
                        "--limit", "gpu1", "--tags", "triton", "-e", "k=v", "--check"]
    [command] = recipe("rollback", "HOST=gpu2")
    assert playbook.command("rollback", command[2:])[1:] == [
        "-i", "ansible/inventory/hosts.yml", str(settings.ROOT / "ansible" / "rollback.yml"), "--limit", "gpu2"]


def tritonops(*args: str, cwd=settings.ROOT) -> subprocess.CompletedProcess:
    # this checkout's package first on sys.path, whatever the folder and the venv's editable install
    return subprocess.run([sys.executable, "-m", "tritonops.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(settings.ROOT)})


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help(command):
    done = tritonops(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: tritonops {command} "), done.stdout[:200]


def test_deploy_and_rollback_run_the_repos_playbooks_from_anywhere(tmp_path):
    """The real ansible-playbook, started from another folder: the repo's playbook, inventory and ansible.cfg."""
    deploy = tritonops("deploy", "--limit", "gpu1", "--list-hosts", cwd=tmp_path)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "playbook: " + str(settings.ROOT / "ansible" / "site.yml") in deploy.stdout
    assert set(re.findall(r"^ {6}(\S+)$", deploy.stdout, flags=re.M)) == {"gpu1"}, deploy.stdout
    rollback = tritonops("rollback", "--syntax-check", cwd=tmp_path)
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    bad = tritonops("deploy", "--serial", "0")
    assert bad.returncode == 2 and "--serial: expected a whole number of hosts >= 1, got '0'" in bad.stderr, bad.stderr
