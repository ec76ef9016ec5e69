"""Run the repo's ansible-playbook (from ansible/, with its ansible.cfg) and read its PLAY RECAP."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tritonops import settings

ANSIBLE_DIR = settings.ROOT / "ansible"
VENV_BIN = Path(sys.executable).parent
LOGS = settings.ROOT / "reports" / "ansible"  # git-ignored


@dataclass
class PlayResult:
    rc: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP per host: {'host': {'ok': 12, 'changed': 0, ...}}."""
        hosts = {}
        for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", self.output, flags=re.M):
            hosts[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
        return hosts


def ansible_playbook(*args: str, log: Path | None = None, timeout: float = 1800) -> PlayResult:
    """Run ansible-playbook from ansible/ with its ansible.cfg.

    The output goes to `log` as it comes (follow it with tail -f) and is returned for assertion messages.
    """
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    log = log or LOGS / "ansible-playbook.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), *args], cwd=ANSIBLE_DIR, env=env, text=True,
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
    return PlayResult(proc.returncode, log.read_text())


def triton_tasks_on_localhost(tmp_path: Path, name: str, tasks: list[dict], variables: dict,
                              repo_root: Path = settings.ROOT) -> PlayResult:
    """Run tasks (the triton role's own task files, through include_role) on this machine with the repo's
    group_vars, as the controller step of a deploy runs them; the play and its log are named `name`."""
    playbook = tmp_path / f"{name}.yml"
    playbook.write_text(json.dumps([{
        "name": f"{name} with the triton role", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(ANSIBLE_DIR / "group_vars" / "all.yml")], "tasks": tasks}]))
    variables = {"tritonops_repo_root": str(repo_root), "ansible_python_interpreter": sys.executable, **variables}
    return ansible_playbook("-i", "localhost,", str(playbook), "-e", json.dumps(variables),
                            log=LOGS / f"{name}-{tmp_path.name}.log", timeout=300)


def role_tasks(tasks_from: str) -> dict:
    """An include_role task for one of the triton role's task files."""
    return {"name": f"The role's {tasks_from}", "ansible.builtin.include_role": {"name": "triton", "tasks_from": tasks_from}}


def ansible_playbook_killed_at(banner: str, *args: str, log: Path, timeout: float = 900) -> PlayResult:
    """Run ansible-playbook as above and SIGKILL it, with every process of its session, as soon as a
    line of its output starts with `banner` (a task's "TASK [...]" line: the tasks before it are done):
    a controller that dies there. Fails when the play ends without printing the banner."""
    import signal
    import time

    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(log, "w") as out:
        proc = subprocess.Popen([str(VENV_BIN / "ansible-playbook"), *args], cwd=ANSIBLE_DIR, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            for line in proc.stdout:
                out.write(line)
                if line.startswith(banner):
                    os.killpg(proc.pid, signal.SIGKILL)
                    out.write(f"\n*** SIGKILLed the controller at: {line.strip()}\n")
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {banner!r} within {timeout} s")
            else:
                raise AssertionError(f"the play ended (rc {proc.wait()}) without reaching {banner!r}; see {log}")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return PlayResult(proc.returncode, log.read_text())
