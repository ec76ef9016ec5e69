"""The roles as their inputs make them, on this machine with no host and no GPU (issue 13 item 5): one
ansible-playbook run renders what each role would write or install, through the role's own variables
and tasks, with this repo's group_vars/all.yml on top of the literal defaults.

- daemon.json: the docker role's content carries NVIDIA's runtime on a GPU host only, and no other
  role writes daemon.json or runs `nvidia-ctk runtime configure`;
- the prometheus role lists the alert rules it installs (compose/prometheus/alerts.yml), promtool-checked;
- Ubuntu's driver packages are the headless server set of versions.env's branch;
- the CDI spec is regenerated when the loaded driver is not the one it describes (the toolkit role's
  cdi.yml in --check: the generate command would run), left alone when it is, and left to the boot
  unit while no driver is loaded;
- the roles' defaults read no tritonops_* variable."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from needs import require

from tritonops import settings
from tritonops.stack import compose

from playbook_runner import ANSIBLE_DIR, LOGS, ansible_playbook

ROLES = ANSIBLE_DIR / "roles"
# The prometheus role's scrape config as its controller task renders it (tasks/config.yml), for INVENTORY.
PROMETHEUS_CONFIG = "prometheus_rendered.stdout"
# Targets as an inventory gives them: an address, an IPv6 one, none (the name) and a port of the host's own.
INVENTORY = {"gpu_hosts": {"hosts": {"gpu-a": {"ansible_host": "192.0.2.5", "triton_metrics_port": 9102},
                                     "gpu-b": {"ansible_host": "2001:db8::7"}, "gpu-c": {}}},
             "gateways": {"hosts": {"gw": {"ansible_host": "192.0.2.9"}}}}
LOADED = "580.95.05"  # a driver version as /sys/module/nvidia/version holds it


def role_vars(role: str) -> list[str]:
    """A role's variables as Ansible ranks them: its defaults, this repo's group_vars, its vars."""
    return [str(ROLES / role / "defaults" / "main.yml"), str(ANSIBLE_DIR / "group_vars" / "all.yml"),
            *[str(p) for p in [ROLES / role / "vars" / "main.yml"] if p.exists()]]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """{play name: {task name: localhost's result}} of one run in --check, read from the json callback."""
    out = tmp_path_factory.mktemp("role-inputs")
    spec = out / "nvidia.yaml"
    spec.write_text(f"devices: []\ncontainerEdits:\n  mounts:\n    - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.{LOADED}\n")
    (out / "loaded").write_text(f"{LOADED}\n")
    (out / "upgraded").write_text("580.105.08\n")

    def show(expression: str) -> list[dict]:  # debug runs on the controller: no module to start
        return [{"name": "Show", "ansible.builtin.debug": {"var": expression}}]

    def cdi_play(name: str, version_file: Path) -> dict:
        return {"name": f"cdi-{name}", "hosts": "localhost", "gather_facts": False,
                "vars_files": [str(ANSIBLE_DIR / "group_vars" / "all.yml")],
                "tasks": [{"name": "The toolkit role's CDI tasks", "ansible.builtin.include_role": {
                    "name": "nvidia_container_toolkit", "tasks_from": "cdi.yml"},
                    # task vars: above the role's own vars/main.yml
                    "vars": {"nvidia_container_toolkit_cdi_spec": str(spec),
                             "nvidia_container_toolkit_driver_version_file": str(version_file)}}]}

    plays = [
        {"name": "daemon-gpu", "hosts": "localhost", "gather_facts": False, "vars_files": role_vars("docker"),
         "vars": {"ansible_local": {"tritonops": {"gpu_present": True}}}, "tasks": show("docker_daemon_json")},
        {"name": "daemon-cpu", "hosts": "localhost", "gather_facts": False, "vars_files": role_vars("docker"),
         "tasks": show("docker_daemon_json")},
        {"name": "ubuntu", "hosts": "localhost", "gather_facts": False, "vars_files": role_vars("nvidia_driver"),
         "tasks": show("nvidia_driver_ubuntu_packages")},
        cdi_play("current", out / "loaded"), cdi_play("upgraded", out / "upgraded"), cdi_play("unloaded", out / "absent"),
        *[{"name": name, "hosts": "localhost", "gather_facts": False, "vars_files": role_vars("prometheus"),
           "tasks": [{"name": "The role's config.yml", "ansible.builtin.include_role": {"name": "prometheus", "tasks_from": "config.yml"},
                      "vars": extra},  # task vars: above vars_files
                     *[{"name": f"Show {var}", "ansible.builtin.debug": {"var": var}, "vars": extra}
                       for var in ("prometheus_rules_file", "prometheus_rules_path", PROMETHEUS_CONFIG)]]}
          for name, extra in (("prometheus", {}), ("prometheus-no-rules", {"prometheus_rules_file": ""}))],
    ]
    playbook = out / "role-inputs.yml"
    playbook.write_text(json.dumps(plays))
    with pytest.MonkeyPatch.context() as env:  # one JSON document on stdout, nothing else
        env.setenv("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json")
        env.setenv("ANSIBLE_CALLBACKS_ENABLED", "ansible.posix.timer")  # not ansible.cfg's profile_roles
        (out / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
        result = ansible_playbook("-i", str(out / "inventory.yml"), "-c", "local", str(playbook), "--check", "-e",
                                  json.dumps({"tritonops_repo_root": str(settings.ROOT), "ansible_python_interpreter": sys.executable}),
                                  log=LOGS / "role-inputs.log", timeout=300)
    assert result.rc == 0, result.output[-4000:]
    assert spec.read_text().endswith(f"libcuda.so.{LOADED}\n")  # --check: the spec itself untouched
    report, _ = json.JSONDecoder().raw_decode(result.output[result.output.index("{"):])
    return {play["play"]["name"]: {task["task"]["name"].split(" : ", 1)[-1]: task["hosts"]["localhost"] for task in play["tasks"]}
            for play in report["plays"]}


def test_daemon_json_carries_the_nvidia_runtime_on_gpu_hosts_only(rendered):
    gpu, cpu = (rendered[play]["Show"]["docker_daemon_json"] for play in ("daemon-gpu", "daemon-cpu"))
    assert gpu["runtimes"] == {"nvidia": {"path": "nvidia-container-runtime", "args": []}}
    assert "runtimes" not in cpu
    for daemon in (gpu, cpu):  # the role's own settings stay under the options
        assert daemon["log-driver"] == "json-file" and daemon["live-restore"] is True
        assert daemon["log-opts"] == {"max-size": settings.get("CONTAINER_LOG_MAX_SIZE"),
                                      "max-file": settings.get("CONTAINER_LOG_MAX_FILE")}


def tasks_of(role_dir: Path):
    for path in sorted(role_dir.glob("tasks/*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            yield from [(path, t) for t in [task, *task.get("block", []), *task.get("rescue", []), *task.get("always", [])]]


def test_daemon_json_has_one_writer_the_docker_role():
    writers = []
    for role in sorted(p for p in ROLES.iterdir() if p.is_dir()):
        for path, task in tasks_of(role):
            text = json.dumps(task)
            if "daemon.json" in text and any(k in task for k in ("ansible.builtin.copy", "ansible.builtin.template",
                                                                 "ansible.builtin.lineinfile", "ansible.builtin.blockinfile")):
                writers.append(f"{path.relative_to(ANSIBLE_DIR)}: {task['name']}")
            assert "runtime configure" not in text, f"{path}: {task['name']} edits daemon.json behind the docker role"
    assert writers == ["roles/docker/tasks/main.yml: Write daemon.json (log rotation, live-restore, docker_daemon_options)"]


def test_ubuntu_gets_the_headless_server_driver(rendered):
    branch = settings.get("NVIDIA_DRIVER_BRANCH")
    assert rendered["ubuntu"]["Show"]["nvidia_driver_ubuntu_packages"] == [f"nvidia-headless-{branch}-server", f"nvidia-utils-{branch}-server",
                                        f"libnvidia-compute-{branch}-server", f"nvidia-compute-utils-{branch}-server"]


@pytest.mark.parametrize("case, regenerated", [("current", False), ("upgraded", True), ("unloaded", False)])
def test_cdi_spec_is_regenerated_when_the_loaded_driver_changed(rendered, case, regenerated):
    tasks = rendered[f"cdi-{case}"]
    generate = next(result for name, result in tasks.items() if name.startswith("Generate the CDI spec"))
    # --check: a command that would run says so; one whose condition is false is skipped with it
    assert (generate.get("msg") == "Command would have run if not in check mode") is regenerated, generate
    assert ("false_condition" in generate) is not regenerated, generate
    waiting = tasks["Say the spec waits for the driver to load"]
    assert ("no NVIDIA kernel module is loaded on localhost" in waiting.get("msg", "")) is (case == "unloaded"), waiting


def test_role_defaults_read_no_playbook_variables():
    # <role>_tritonops_cli: the controller's CLI the role runs, not a playbook variable
    offenders = [str(p.relative_to(ANSIBLE_DIR)) for p in sorted(ROLES.glob("*/defaults/main.yml"))
                 if "tritonops_" in re.sub(r"\b[a-z]+_tritonops_cli\b", "", p.read_text())]
    assert not offenders, f"role defaults read tritonops_* (map them in group_vars/all.yml instead): {offenders}"


def test_prometheus_role_installs_the_compose_alert_rules_and_lists_them(rendered, tmp_path):
    """group_vars hands the role compose/prometheus/alerts.yml (one rules file for both setups); the config
    lists the path the role installs it at, and passes `promtool check config` with the rules there.
    Without a rules file the config lists none."""
    require("promtool")
    shown = rendered["prometheus"]
    assert Path(shown["Show prometheus_rules_file"]["prometheus_rules_file"]) == compose.ALERT_RULES
    install = next(t for _, t in tasks_of(ROLES / "prometheus") if t["name"].startswith("Install the alert rules"))
    assert install["ansible.builtin.copy"]["dest"] == "{{ prometheus_rules_path }}", install
    dest = shown["Show prometheus_rules_path"]["prometheus_rules_path"]
    config = yaml.safe_load(shown[f"Show {PROMETHEUS_CONFIG}"][PROMETHEUS_CONFIG])
    assert config["rule_files"] == [dest], config
    assert "rule_files" not in yaml.safe_load(rendered["prometheus-no-rules"][f"Show {PROMETHEUS_CONFIG}"][PROMETHEUS_CONFIG])
    shutil.copy(compose.ALERT_RULES, tmp_path / "rules.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({**config, "rule_files": [str(tmp_path / "rules.yml")]}))
    done = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
    assert done.returncode == 0 and "SUCCESS: 1 rule files found" in done.stdout, done.stdout + done.stderr


def test_prometheus_role_scrapes_the_inventory_with_make_ups_renderer(rendered):
    """The role's config comes from tritonops.stack.prometheus, as make up's does: one target per host of
    gpu_hosts and gateways, by ansible_host (bracketed when IPv6; the name when unset) and the host's own
    port or the default, labelled host=<inventory name>. The two configs differ only in how the triton
    job finds its targets (compose: the service's DNS records, one per replica)."""
    fleet = yaml.safe_load(rendered["prometheus"][f"Show {PROMETHEUS_CONFIG}"][PROMETHEUS_CONFIG])
    jobs = {job["job_name"]: job for job in fleet["scrape_configs"]}
    assert list(jobs) == ["triton", "gateway"], jobs
    targets = {job: [(c["targets"], c["labels"]) for c in jobs[job]["static_configs"]] for job in jobs}
    metrics, stats = settings.port("metrics"), int(settings.get("GATEWAY_STATS_PORT"))
    assert targets == {"triton": [(["192.0.2.5:9102"], {"host": "gpu-a"}), ([f"[2001:db8::7]:{metrics}"], {"host": "gpu-b"}),
                                  ([f"gpu-c:{metrics}"], {"host": "gpu-c"})],
                       "gateway": [([f"192.0.2.9:{stats}"], {"host": "gw"})]}, targets
    single = yaml.safe_load(compose.prometheus_config(compose.environment()))
    assert fleet["global"] == single["global"] == {"scrape_interval": settings.get("PROMETHEUS_SCRAPE_INTERVAL"),
                                                   "evaluation_interval": "15s"}, (fleet["global"], single["global"])
    assert [j["job_name"] for j in single["scrape_configs"]] == list(jobs)
    assert single["scrape_configs"][0]["dns_sd_configs"][0]["port"] == metrics
