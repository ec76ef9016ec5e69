"""One renderer of a host's files (tritonops.stack.hostfiles): the triton role's tasks/host-files.yml, run by
Ansible on this machine as on a deploy's controller (no host needed), and `make up`'s tritonops.stack.compose
give the same env file, apart from what a host's variables change, and the same gateway files, byte for
byte: plain, and with TLS, API keys, replicas and the host's own addresses and ports. The env file the
role ships sets every compose variable (`compose config`), with the same stop grace period and image names
as `make up`'s. A port changed in versions.env alone moves Make, `make up`'s env file and the role's
together (issue 13)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tritonops import settings
from tritonops.stack import compose, gateway, hostfiles, images

from certs import self_signed
from playbook_runner import ANSIBLE_DIR, role_tasks, triton_tasks_on_localhost
from repos import BYOM_MODEL, build_byom_repository

ROLE = ANSIBLE_DIR / "roles" / "triton"
IMAGE_KEYS = ["TRITON_IMAGE_CPU", "TRITON_IMAGE_GPU", "TRITON_GATEWAY_IMAGE"]
# What a host's files name differently from `make up`'s by design: where its files are (relative to the
# release), no Prometheus or Grafana (hosts never start the monitoring profile), the admin key's host copy,
# and the address it publishes on (triton_bind_address: every interface; make up: loopback).
HOST_ONLY = {"MODEL_REPOSITORY_DIR", *hostfiles.GATEWAY_FILES, "PROMETHEUS_CONFIG", "GRAFANA_ADMIN_PASSWORD",
             "GRAFANA_USER", "ADMIN_KEY_MOUNT", "BIND_ADDRESS"}


def role_play(tmp_path: Path, variables: dict, repo_root: Path = settings.ROOT):
    """Run the role's host-files.yml on this machine (its controller step, as a deploy runs it) and copy
    what it rendered to tmp_path/role."""
    out = tmp_path / "role"
    result = triton_tasks_on_localhost(tmp_path, "host-files", [
        role_tasks("host-files.yml"),
        {"name": "Keep what it rendered", "ansible.builtin.copy": {
            "src": "{{ triton_host_files }}/", "dest": f"{out}/", "mode": "preserve"}},
        {"name": "Remove its private folder", "ansible.builtin.file": {
            "path": "{{ triton_host_files_tmp.path }}", "state": "absent"}}], variables, repo_root)
    return result, out


def role_files(tmp_path: Path, variables: dict, repo_root: Path = settings.ROOT) -> Path:
    """role_play's folder (compose.env, gateway/), once the play passed."""
    result, out = role_play(tmp_path, variables, repo_root)
    assert result.rc == 0, result.output[-4000:]
    return out


def role_env(tmp_path, compose_env: dict[str, str], repo_root: Path = settings.ROOT) -> dict[str, str]:
    return settings.parse_env_file(role_files(tmp_path, {"triton_compose_env": compose_env}, repo_root) / "compose.env")


def make_up(tmp_path: Path, overrides: dict[str, str]) -> tuple[dict[str, str], Path]:
    """`make up`'s env file (tritonops.stack.compose) and its gateway folder."""
    env_file = compose.write_env(tmp_path / "make-up" / "compose.env", overrides)
    env = settings.parse_env_file(env_file)
    return env, Path(env["GATEWAY_CONFIG"]).parent


def assert_one_renderer(role: Path, make_up_env: dict[str, str], gateway_dir: Path, host_changes: set[str]) -> None:
    """The role's files equal make up's: the env file apart from HOST_ONLY and host_changes, the gateway's byte for byte."""
    theirs = settings.parse_env_file(role / "compose.env")
    differ = {k for k in make_up_env.keys() | theirs.keys() if make_up_env.get(k) != theirs.get(k)}
    assert differ <= HOST_ONLY | host_changes, sorted(differ - HOST_ONLY - host_changes)
    assert theirs["MODEL_REPOSITORY_DIR"] == "./model_repository"  # the release's copy, beside compose.env
    assert {theirs[k] for k in hostfiles.GATEWAY_FILES} == {f"./gateway/{n}" for n in hostfiles.GATEWAY_FILES.values()}
    for name in hostfiles.GATEWAY_FILES.values():
        assert (role / "gateway" / name).read_bytes() == (gateway_dir / name).read_bytes(), f"{name} differs from make up's"


def test_the_role_and_make_up_render_the_same_host(tmp_path):
    env, gateway_dir = make_up(tmp_path, {})
    assert_one_renderer(role_files(tmp_path, {}), env, gateway_dir, set())


def test_the_same_host_with_tls_keys_replicas_and_its_own_ports(tmp_path):
    """Every host variable the role maps onto a versions.env key, and the gateway's TLS and keys."""
    tls = self_signed(tmp_path / "tls")
    keys = ["k-one" * 7, "k-two" * 7]  # gateway.MIN_KEY_LENGTH characters and more
    (tmp_path / "keys").write_text("".join(f"{k}\n" for k in keys))
    (tmp_path / "keys").chmod(0o600)
    host = {"BIND_ADDRESS": "10.0.0.7", "HOST_HTTP_PORT": "18000", "HOST_GRPC_PORT": "18001", "HOST_METRICS_PORT": "18002"}
    env, gateway_dir = make_up(tmp_path, {**host, "TRITON_REPLICAS": "2", "SHM_SIZE": "512m", "GATEWAY_TLS_CERT": str(tls.cert),
                                          "GATEWAY_TLS_KEY": str(tls.key), "GATEWAY_API_KEYS_FILE": str(tmp_path / "keys")})
    role = role_files(tmp_path, {
        "triton_bind_address": "10.0.0.7", "triton_http_port": 18000, "triton_grpc_port": 18001, "triton_metrics_port": 18002,
        "triton_compose_env": {"TRITON_REPLICAS": "2", "SHM_SIZE": "512m"},
        "triton_gateway_tls_cert": str(tls.cert), "triton_gateway_tls_key": str(tls.key), "triton_gateway_api_keys": keys})
    # make up names its TLS and key files in its env; a host's come from the role's variables on the controller
    assert_one_renderer(role, env, gateway_dir, {"GATEWAY_TLS_CERT", "GATEWAY_TLS_KEY", "GATEWAY_API_KEYS_FILE"})
    config = (role / "gateway" / "haproxy.cfg").read_text()
    assert config.count("ssl crt /usr/local/etc/haproxy/tls.pem") == 2 and "-f /usr/local/etc/haproxy/api-keys" in config
    assert "server triton2 triton:" in config
    assert (role / "gateway" / "api-keys").read_text() == "".join(f"{k}\n" for k in keys)


def test_a_user_repository_gives_the_role_the_same_gateway_check(tmp_path):
    repo = build_byom_repository(tmp_path)
    env, gateway_dir = make_up(tmp_path, {"MODEL_REPOSITORY": str(repo)})
    role = role_files(tmp_path, {"triton_model_repository": str(repo)})
    assert_one_renderer(role, env, gateway_dir, {"MODEL_REPOSITORY"})
    sent = re.findall(r"^    http-check send meth \S+ uri (\S+) ", (role / "gateway" / "haproxy.cfg").read_text(), re.M)
    assert sent == [f"/v2/models/{BYOM_MODEL}/infer"] * 2, sent  # the user's model, on HTTP's and gRPC's backend


def test_bad_host_values_fail_the_play_naming_the_key(tmp_path):
    result, out = role_play(tmp_path, {"triton_compose_env": {"TRITON_REPLICAS": "two"}})
    assert result.rc != 0 and not out.exists()
    assert re.search(r"host-files: TRITON_REPLICAS=\W+two\W+: expected a whole number >= 1", result.output), result.output[-3000:]


@pytest.mark.compose
def test_the_role_env_file_sets_every_compose_variable(tmp_path):
    """Ansible runs the same compose.yaml with the env file host-files.yml renders: `compose config` of
    every profile resolves each ${VAR} (an unset one warns and becomes "")."""
    env_file = role_files(tmp_path, {}) / "compose.env"
    for gpu in (False, True):
        stack = compose.Stack("tritonops-role-env-check", env_file, gpu=gpu, monitoring=True)
        proc = stack.run("config", capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
        triton = yaml.safe_load(proc.stdout)["services"]["triton"]
        assert triton["cap_drop"] == ["ALL"]
        # v2 writes bytes, v1 the string as given
        assert gateway.memory_bytes(str(triton["mem_limit"])) == gateway.memory_bytes(settings.get("TRITON_MEMORY_LIMIT"))


@pytest.mark.parametrize("host_timeout", [None, "95"], ids=["versions.env", "host"])
def test_role_and_make_up_derive_the_same_stop_grace_period(tmp_path, host_timeout):
    overrides = {"TRITON_EXIT_TIMEOUT_SECS": host_timeout} if host_timeout else {}
    ours = role_env(tmp_path, overrides)
    theirs = settings.parse_env_file(compose.write_env(tmp_path / "make-up.env", overrides))
    timeout = int(host_timeout or settings.get("TRITON_EXIT_TIMEOUT_SECS"))
    assert ours["TRITON_EXIT_TIMEOUT_SECS"] == str(timeout)
    assert ours["TRITON_STOP_GRACE_PERIOD"] == theirs["TRITON_STOP_GRACE_PERIOD"] == f"{timeout + compose.STOP_MARGIN_SECS}s"
    # The images compose runs: the role's names come from the same builder as `make up`'s (tritonops.stack.images).
    assert [ours[k] for k in IMAGE_KEYS] == [theirs[k] for k in IMAGE_KEYS] == \
        [images.FLAVOURS["cpu"].image, images.FLAVOURS["gpu"].image, images.gateway_image()]


PORTS = {"HTTP_PORT": "9100", "GRPC_PORT": "9101", "METRICS_PORT": "9102"}


@pytest.fixture(scope="module")
def moved_repo(tmp_path_factory):
    """A copy of the repo whose versions.env moves the three ports (the package
    copied, so that its settings.ROOT is the copy; the rest linked; its own .cache, for versions.mk)."""
    root = tmp_path_factory.mktemp("moved-repo")
    text = settings.VERSIONS_FILE.read_text()
    for key, value in PORTS.items():
        text, n = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        assert n == 1, key
    (root / "versions.env").write_text(text)
    shutil.copytree(settings.ROOT / "tritonops", root / "tritonops", ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".cache").mkdir()
    for entry in settings.ROOT.iterdir():
        if entry.name not in {"versions.env", "tritonops", ".cache", ".git", "reports"}:
            (root / entry.name).symlink_to(entry)
    return root


def test_ports_changed_in_versions_env_move_make_compose_and_the_role_together(moved_repo, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in PORTS and k != "URL"}  # Make and compose read these too
    make = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(moved_repo),
                           "--eval", "ports: ; @echo $(HTTP_PORT) $(GRPC_PORT) $(METRICS_PORT) $(URL)", "ports"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert make.returncode == 0, make.stderr
    assert make.stdout.split() == ["9100", "9101", "9102", "localhost:9100"]
    # `make up`'s env file, written by the copy's tritonops.stack.compose from the copy's versions.env
    make_up = tmp_path / "make-up.env"
    code = "import sys; from pathlib import Path; from tritonops import settings; from tritonops.stack import compose; " \
           "print(settings.ROOT); compose.write_env(Path(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(make_up)], cwd=moved_repo, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(moved_repo)}, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == [str(moved_repo)], done.stdout + done.stderr  # the copy's own settings
    ours, theirs = role_env(tmp_path, {}, repo_root=moved_repo), settings.parse_env_file(make_up)
    for key, value in PORTS.items():  # the container's port and the host port it is published on
        assert ours[key] == theirs[key] == value, key
        assert ours[f"HOST_{key}"] == theirs[f"HOST_{key}"] == value, key
    # What Prometheus scrapes: every triton replica (DNS discovery) on the metrics port.
    scrape = {j["job_name"]: j for j in yaml.safe_load(Path(theirs["PROMETHEUS_CONFIG"]).read_text())["scrape_configs"]}
    assert scrape["triton"]["dns_sd_configs"][0]["port"] == int(PORTS["METRICS_PORT"]), scrape["triton"]
    assert "MODEL_NAME" not in ours and "MODEL_NAME" not in theirs  # no setting names a model (issue 25)


def test_the_gateway_files_inside_path_has_one_value_and_checked_copies():
    """Where the gateway's files sit in its container: tritonops.stack.hostfiles.GATEWAY_INSIDE (the config names
    them there); compose.yaml mounts each file there and the role's haproxy -c mounts them there too."""
    service = yaml.safe_load((settings.ROOT / "compose" / "compose.yaml").read_text())["services"]["gateway"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in service["volumes"] if volume.startswith("${GATEWAY_")}
    assert mounts == {f"${{{key}}}": f"{hostfiles.GATEWAY_INSIDE}/{name}" for key, name in hostfiles.GATEWAY_FILES.items()}, \
        f"compose/compose.yaml's gateway volumes differ from tritonops/stack/hostfiles.py's GATEWAY_INSIDE/GATEWAY_FILES: {mounts}"
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert role_vars["triton_gateway_inside"] == hostfiles.GATEWAY_INSIDE, \
        "ansible/roles/triton/vars/main.yml triton_gateway_inside differs from tritonops/stack/hostfiles.py GATEWAY_INSIDE"


def test_the_release_layout_is_the_roles_the_renderer_refuses_values_without_it(tmp_path):
    """MODEL_REPOSITORY_DIR (where the release keeps its models) comes from the role's layout only: the
    renderer writes no default of its own and says what is missing."""
    done = subprocess.run([sys.executable, "-m", "tritonops.stack.hostfiles", "--out", str(tmp_path / "out"), "--values", "-"],
                          input="{}", capture_output=True, text=True, timeout=120, cwd=settings.ROOT)
    assert done.returncode == 1 and "no MODEL_REPOSITORY_DIR" in done.stderr, done.stdout + done.stderr
    assert not (tmp_path / "out").exists()
