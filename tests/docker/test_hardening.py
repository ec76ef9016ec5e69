"""Hardened containers (docs/security.md, Hardened containers), read back from the running stack: what
`docker inspect` says each service got from compose/compose.yaml, and what the kernel says each
process in the Triton and gateway containers runs with (/proc/<pid>/status). Then Grafana's
credentials: its password file and how compose hands it over (Grafana itself has no offline image
here: a local image stands in for it under the same service definition)."""
from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys

import pytest
import yaml
from ci_policy import skip_or_fail

from tritonops import settings
from tritonops.models import linear
from tritonops.serving import smoke
from tritonops.stack import compose, images

pytestmark = pytest.mark.docker

ALL_CAPS_GONE = "0" * 16
# Services whose limits compose.yaml sets: the memory knob each one reads from versions.env.
MEMORY_KNOB = {"triton": "TRITON_MEMORY_LIMIT", "gateway": "GATEWAY_MEMORY_LIMIT"}
TMP_SIZE = {"triton": "${TRITON_TMP_SIZE}", "gateway": "1m"}


def to_bytes(size: str) -> int:
    """Docker's size strings as compose writes them (1g, 1280m, 64m, 1k)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(size[:-1]) * units[size[-1].lower()] if size[-1].lower() in units else int(size)


def container(stack, docker_client, service: str):
    ids = stack.container_ids(service)
    assert len(ids) == 1, f"expected one {service} container, got {ids}"
    return docker_client.containers.get(ids[0])


def compose_service(service: str) -> dict:
    return yaml.safe_load(compose.BASE_FILE.read_text())["services"][service]


def process_status(ctr) -> dict[str, dict[str, str]]:
    """{"<pid> <comm>": /proc/<pid>/status fields} for every process in the container."""
    script = 'for p in /proc/[0-9]*; do echo "== ${p#/proc/} $(cat $p/comm)"; cat $p/status; done 2>/dev/null'
    out = ctr.exec_run(["sh", "-c", script]).output.decode()
    processes, current = {}, None
    for line in out.splitlines():
        if line.startswith("== "):
            current = processes.setdefault(line[3:], {})
        elif current is not None and ":\t" in line:
            key, value = line.split(":\t", 1)
            current[key] = value.strip()
    return processes


@pytest.mark.parametrize("service", ["triton", "gateway", "prometheus"])
def test_docker_inspect_shows_the_hardening(stack, docker_client, service):
    host = container(stack, docker_client, service).attrs["HostConfig"]
    env = stack.env
    assert host["CapDrop"] == ["ALL"], f"{service}: CapDrop={host['CapDrop']}"
    assert "no-new-privileges:true" in (host["SecurityOpt"] or []), f"{service}: SecurityOpt={host['SecurityOpt']}"
    assert host["LogConfig"] == {"Type": "json-file", "Config": {
        "max-size": env["CONTAINER_LOG_MAX_SIZE"], "max-file": env["CONTAINER_LOG_MAX_FILE"]}}, host["LogConfig"]
    if service in MEMORY_KNOB:
        limit = to_bytes(env[MEMORY_KNOB[service]])
        assert host["Memory"] == limit and host["MemorySwap"] == limit, (host["Memory"], host["MemorySwap"])
        assert host["PidsLimit"] == compose_service(service)["pids_limit"] > 0
        size = TMP_SIZE[service].replace("${TRITON_TMP_SIZE}", env["TRITON_TMP_SIZE"])
        assert host["Tmpfs"] == {"/tmp": f"size={size}"}, host["Tmpfs"]


@pytest.mark.parametrize("service", ["triton", "gateway"])
def test_limits_reach_the_kernel(stack, docker_client, service):
    """Seen from inside: /tmp's size and flags, and the cgroup's pids and memory limits."""
    ctr = container(stack, docker_client, service)
    env = stack.env
    size = to_bytes(TMP_SIZE[service].replace("${TRITON_TMP_SIZE}", env["TRITON_TMP_SIZE"]))
    mounts = ctr.exec_run(["cat", "/proc/mounts"]).output.decode()
    tmp = [line.split() for line in mounts.splitlines() if line.split()[1] == "/tmp"]
    assert len(tmp) == 1 and f"size={size // 1024}k" in tmp[0][3].split(","), tmp
    assert {"nosuid", "nodev", "noexec"} <= set(tmp[0][3].split(",")), tmp
    # cgroup v2 files first, then v1's (this engine's): the limits the kernel enforces.
    read = 'cat /sys/fs/cgroup/{0} 2>/dev/null || cat /sys/fs/cgroup/{1}'
    pids = ctr.exec_run(["sh", "-c", read.format("pids.max", "pids/pids.max")]).output.decode().strip()
    memory = ctr.exec_run(["sh", "-c", read.format("memory.max", "memory/memory.limit_in_bytes")]).output.decode().strip()
    assert (pids, memory) == (str(compose_service(service)["pids_limit"]), str(to_bytes(env[MEMORY_KNOB[service]])))


@pytest.mark.parametrize("service", ["triton", "gateway"])
def test_every_process_runs_without_capabilities(stack, docker_client, service):
    """PID 1 (tini in Triton's container, init: true) and every process under it, tritonserver and
    the Python backend stub included: no effective, permitted or bounding capability, NoNewPrivs 1,
    not root. CapBnd is what shows cap_drop: a non-root process has CapEff 0 either way."""
    processes = process_status(container(stack, docker_client, service))
    assert any(name.startswith("1 ") for name in processes), processes.keys()
    if service == "triton":
        names = {name.split(" ", 1)[1] for name in processes}
        assert "tritonserver" in names and any(n.startswith("triton_python_b") for n in names), names
    for name, fields in processes.items():
        seen = {k: fields[k] for k in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs")}
        assert seen == {"CapEff": ALL_CAPS_GONE, "CapPrm": ALL_CAPS_GONE, "CapBnd": ALL_CAPS_GONE,
                        "NoNewPrivs": "1"}, f"{service} process {name}: {seen}"
        if not name.startswith("1 "):  # PID 1 in Triton's container is Docker's tini
            assert fields["Uid"].split()[0] != "0", f"{service} process {name} runs as root"


def test_hardened_stack_answers_the_seed_request(stack, docker_client):
    env = stack.env
    host = env["BIND_ADDRESS"]
    out = io.StringIO()
    # this module's stack mounts a linear-only copy (conftest: no STACK_SERVES_EMBED)
    smoke.run(f"{host}:{env['HOST_HTTP_PORT']}", f"{host}:{env['HOST_GRPC_PORT']}", out=out, models=[linear.MODEL])
    assert out.getvalue().count("ok ") == 3, out.getvalue()
    triton = container(stack, docker_client, "triton")
    assert triton.attrs["RestartCount"] == 0 and triton.attrs["State"]["Health"]["Status"] == "healthy"


# --- Grafana: no default credentials ---

def config_of(tmp_path, **overrides) -> dict:
    """`compose config` of the monitoring profile: the grafana service as compose would run it."""
    env = compose.write_env(tmp_path / "compose.env", overrides)
    proc = compose.Stack("tritonops-grafana-config", env, monitoring=True).run("config", capture_output=True,
                                                                                text=True, check=False)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
    return yaml.safe_load(proc.stdout)["services"]["grafana"]


def test_grafana_runs_with_a_password_file_and_no_anonymous_access(tmp_path):
    grafana = config_of(tmp_path)
    secret = compose.grafana_password_file(tmp_path / "compose.env")
    environment = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment  # a value here would show in docker inspect
    target = environment["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    mounts = [tuple(v.split(":")) if isinstance(v, str) else (v["source"], v["target"], "ro" if v.get("read_only") else "rw")
              for v in grafana["volumes"]]  # v1 prints short syntax, v2 long
    assert (str(secret), target, "ro") in mounts, grafana["volumes"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["user"] == str(secret.stat().st_uid) != "0"
    assert grafana["cap_drop"] == ["ALL"] and grafana["security_opt"] == ["no-new-privileges:true"]
    assert config_of(tmp_path, GRAFANA_ANONYMOUS="true")["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    with pytest.raises(compose.ComposeError, match="GRAFANA_ANONYMOUS='yes'"):
        compose.write_env(tmp_path / "compose.env", {"GRAFANA_ANONYMOUS": "yes"})
    secret.chmod(0o644)  # someone loosened it: refused, with the fix
    with pytest.raises(compose.ComposeError, match=f"{secret}: mode 0644 .* chmod 600"):
        compose.write_env(tmp_path / "compose.env")


def test_grafana_password_is_generated_once_private_and_outside_git():
    """`make up`'s own path (tritonops.stack.compose env, the default state folder), twice: the same
    password, mode 0600 in a 0700 folder, owned by Grafana's user, and git ignores it."""
    project = f"tritonops-test-grafana-{os.getpid()}"
    secret = compose.grafana_password_file(compose.STATE / f"{project}.env")
    try:
        seen = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-m", "tritonops.cli", "compose", "env", "--project", project],
                                  capture_output=True, text=True, cwd=settings.ROOT)
            assert done.returncode == 0, done.stderr
            seen.append(secret.read_text())
        assert seen[0] == seen[1] and len(seen[0]) >= 32 and seen[0].strip() == seen[0]
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
        assert secret.stat().st_uid != 0
        rel = str(secret.relative_to(settings.ROOT))
        ignored = subprocess.run(["git", "check-ignore", "-q", rel], cwd=settings.ROOT)
        assert ignored.returncode == 0, f"{rel} is not git-ignored"
        assert seen[0] not in compose.Stack(project).env_file.read_text()  # only the path is in the env file
    finally:
        for path in compose.STATE.glob(f"{project}*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def test_grafana_service_reads_its_password_and_no_other_user_can(tmp_path, docker_client):
    """compose.yaml's grafana service, run for real with the Debian base standing in for the
    grafana image (absent offline): its user reads the mounted 0600 file, as the image's run.sh
    does for GF_*__FILE, with no capabilities; another uid is refused."""
    if not images.image_exists(images.debian_base()):
        skip_or_fail(f"{images.debian_base()} is not built (make base-image)", need="docker")
    env = compose.write_env(tmp_path / "compose.env", {"GRAFANA_IMAGE": settings.get("DEBIAN_BASE_IMAGE"),
                                                       "GRAFANA_TAG": settings.get("DEBIAN_SUITE")})
    stack = compose.Stack(f"tritonops-test-grafana-{os.getpid()}", env, monitoring=True)
    script = ('cat "$GF_SECURITY_ADMIN_PASSWORD__FILE" && echo && '
              'grep -E "^(CapEff|CapBnd|NoNewPrivs|Uid):" /proc/self/status')

    def run(*user: str) -> subprocess.CompletedProcess:
        return stack.run("run", "--rm", "--no-deps", "-T", *user, "--entrypoint", "sh", "grafana", "-c", script,
                         check=False, capture_output=True, text=True)

    try:
        done = run()
        assert done.returncode == 0, done.stderr
        password, *status = done.stdout.splitlines()
        assert password == compose.grafana_password_file(env).read_text()
        fields = dict(line.split(":\t", 1) for line in status)
        assert fields["CapEff"] == fields["CapBnd"] == ALL_CAPS_GONE and fields["NoNewPrivs"] == "1", fields
        assert fields["Uid"].split()[0] == stack.env["GRAFANA_USER"] != "0"
        other = run("--user", "12345")
        assert other.returncode != 0 and "Permission denied" in other.stderr, other.stdout + other.stderr
    finally:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False, capture_output=True)
