"""The triton role's compose.env (templates/compose.env.j2, rendered by Ansible's template module on this
machine, no host needed) gives compose the same stop grace period as `make up`'s env file: Triton's exit
timeout plus the margin, also when a host sets its own exit timeout (triton_compose_env), and the same image
names (tritonops.images builds them; group_vars reads its output). And a port
changed in versions.env alone moves Make, `make up`'s env file and the role's together (issue 13)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tritonops import compose, images, settings

from playbook_runner import ANSIBLE_DIR, LOGS, ansible_playbook

ROLE = ANSIBLE_DIR / "roles" / "triton"
IMAGE_KEYS = ["TRITON_IMAGE_CPU", "TRITON_IMAGE_GPU", "TRITON_GATEWAY_IMAGE"]


def role_env(tmp_path, compose_env: dict[str, str], repo_root: Path = settings.ROOT) -> dict[str, str]:
    playbook = tmp_path / "compose-env.yml"
    playbook.write_text(json.dumps([{
        "name": "Render the triton role's compose.env", "hosts": "localhost", "connection": "local", "gather_facts": False,
        # Ansible's precedence: role defaults, then group_vars, then role vars.
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ANSIBLE_DIR / "group_vars" / "all.yml"), str(ROLE / "vars" / "main.yml")],
        "tasks": [{"name": "The role's template", "ansible.builtin.template": {
            "src": str(ROLE / "templates" / "compose.env.j2"), "dest": str(tmp_path / "compose.env"), "mode": "0644"}}]}]))
    variables = {"tritonops_repo_root": str(repo_root), "triton_release_dir": str(tmp_path / "release"),
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
    # The images compose runs: the role's names come from the same builder as `make up`'s (tritonops.images).
    assert [ours[k] for k in IMAGE_KEYS] == [theirs[k] for k in IMAGE_KEYS] == \
        [images.FLAVOURS["cpu"].image, images.FLAVOURS["gpu"].image, images.gateway_image()]


PORTS = {"HTTP_PORT": "9100", "GRPC_PORT": "9101", "METRICS_PORT": "9102"}
MOVED = {**PORTS, "MODEL_NAME": "linear2"}  # the served model's name moves with them


@pytest.fixture(scope="module")
def moved_repo(tmp_path_factory):
    """A copy of the repo whose versions.env moves the three ports and renames the model (the package
    copied, so that its settings.ROOT is the copy; the rest linked; its own .cache, for versions.mk)."""
    root = tmp_path_factory.mktemp("moved-repo")
    text = settings.VERSIONS_FILE.read_text()
    for key, value in MOVED.items():
        text, n = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        assert n == 1, key
    (root / "versions.env").write_text(text)
    shutil.copytree(settings.ROOT / "tritonops", root / "tritonops", ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".cache").mkdir()
    for entry in settings.ROOT.iterdir():
        if entry.name not in {"versions.env", "tritonops", ".cache", ".git", "reports"}:
            (root / entry.name).symlink_to(entry)
    return root


def test_ports_and_the_model_name_changed_in_versions_env_move_make_compose_and_the_role_together(moved_repo, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in MOVED and k != "URL"}  # Make and compose read these too
    make = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(moved_repo),
                           "--eval", "ports: ; @echo $(HTTP_PORT) $(GRPC_PORT) $(METRICS_PORT) $(URL)", "ports"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert make.returncode == 0, make.stderr
    assert make.stdout.split() == ["9100", "9101", "9102", "localhost:9100"]
    # `make up`'s env file, written by the copy's tritonops.compose from the copy's versions.env
    make_up = tmp_path / "make-up.env"
    code = "import sys; from pathlib import Path; from tritonops import compose, contract, settings; " \
           "print(settings.ROOT, contract.MODEL); compose.write_env(Path(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(make_up)], cwd=moved_repo, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(moved_repo)}, timeout=60)
    # the copy's own settings; contract's requests name the model (the gateway's check reads the repository's descriptors)
    assert done.returncode == 0 and done.stdout.split() == [str(moved_repo), "linear2"], done.stdout + done.stderr
    ours, theirs = role_env(tmp_path, {}, repo_root=moved_repo), settings.parse_env_file(make_up)
    for key, value in PORTS.items():  # the container's port and the host port it is published on
        assert ours[key] == theirs[key] == value, key
        assert ours[f"HOST_{key}"] == theirs[f"HOST_{key}"] == value, key
    # What Prometheus scrapes: every triton replica (DNS discovery) on the metrics port.
    scrape = {j["job_name"]: j for j in yaml.safe_load(Path(theirs["PROMETHEUS_CONFIG"]).read_text())["scrape_configs"]}
    assert scrape["triton"]["dns_sd_configs"][0]["port"] == int(PORTS["METRICS_PORT"]), scrape["triton"]
    assert ours["MODEL_NAME"] == theirs["MODEL_NAME"] == "linear2"  # both still write it (contract, train name it)
