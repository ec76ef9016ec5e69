"""`tritonops deploy` and `tritonops rollback`: ansible-playbook on ansible/site.yml or ansible/rollback.yml
with the repo's ansible/ansible.cfg and inventory. Options not listed here (--limit HOST, --tags, -e k=v,
--check, --diff, -v, ...) go to ansible-playbook as they are."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from .. import settings
from ..models import fetch

ANSIBLE_DIR = settings.ROOT / "ansible"
PLAYBOOKS = {"deploy": ANSIBLE_DIR / "site.yml", "rollback": ANSIBLE_DIR / "rollback.yml"}
HELP = {"deploy": "the gateways, then a rolling deploy of the fleet, --serial hosts at a time",
        "rollback": "every host (or --limit HOST) back to its previous release, one at a time"}


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of hosts >= 1, got {text!r}")
    return int(text)


def _ansible_playbook() -> str:
    """The ansible-playbook of this interpreter's environment (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if not found:
        raise SystemExit(f"ansible-playbook is neither beside {sys.executable} nor on PATH: "
                         "`pip install .` installs it (the ansible package)")
    return found


def command(verb: str, argv: list[str]) -> list[str]:
    """ansible-playbook's argv for `tritonops <verb> <argv>` (argparse exits on --help or a bad option)."""
    parser = argparse.ArgumentParser(
        prog=f"tritonops {verb}", allow_abbrev=False,  # a prefix of one of ansible-playbook's options is not ours
        description=f"ansible-playbook {PLAYBOOKS[verb].relative_to(settings.ROOT)} with ansible/ansible.cfg: "
                    f"{HELP[verb]}. Options not listed here (--limit HOST, --tags, -e k=v, --check, --diff, -v, ...) "
                    "go to ansible-playbook as they are.")
    parser.add_argument("-i", "--inventory", default=str(ANSIBLE_DIR / "inventory" / "hosts.yml"),
                        help="inventory file (default: %(default)s)")
    if verb == "deploy":  # rollback.yml runs one host at a time, always
        parser.add_argument("--serial", type=_positive, help="GPU hosts deployed at a time (site.yml's tritonops_serial; "
                                                             "default 1)")
    args, rest = parser.parse_known_args(argv)
    serial = ["-e", f"tritonops_serial={args.serial}"] if getattr(args, "serial", None) else []
    return [_ansible_playbook(), "-i", args.inventory, *serial, str(PLAYBOOKS[verb]), *rest]


def run(verb: str, argv: list[str] | None) -> int:
    argv = command(verb, sys.argv[1:] if argv is None else argv)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg")}  # roles_path, callbacks, ssh args
    os.execve(argv[0], argv, env)  # ansible-playbook takes this PID: Ctrl-C and kill reach it directly


def deploy(argv: list[str] | None = None) -> int:
    if problem := fetch.ensure():  # the repo's model repository, as shipped by default
        raise SystemExit(f"tritonops deploy: {problem}")
    return run("deploy", argv)


def rollback(argv: list[str] | None = None) -> int:
    return run("rollback", argv)
