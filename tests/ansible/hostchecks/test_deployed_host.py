"""What a host looks like after `make deploy`, checked over SSH with pytest-testinfra.

    pytest tests/ansible/hostchecks --hosts=ssh://gpu1 [--ssh-config=FILE] [--sudo]

The end-to-end test runs it against its throwaway host. GPU checks run where the host has an
NVIDIA PCI device and skip (saying so) elsewhere.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from tritonops import settings

PORTS = [settings.port("http"), settings.port("grpc"), settings.port("metrics")]


@pytest.fixture(scope="module")
def root(request) -> str:
    return request.config.getoption("--triton-root", default="/opt/tritonops")


def inspect_service(host, request, service: str) -> dict:
    """docker inspect of a compose service's first container (v2 or v1 naming)."""
    project = request.config.getoption("--compose-project", default="tritonops")
    for name in (f"{project}-{service}-1", f"{project}_{service}_1"):
        result = host.run(f"docker inspect {name}")
        if result.rc == 0:
            return json.loads(result.stdout)[0]
    pytest.fail(f"no {project} {service} container on {host.backend.hostname}: {result.stderr}")


@pytest.fixture(scope="module")
def container(host, request) -> dict:
    """docker inspect of the triton service's (first) container."""
    return inspect_service(host, request, "triton")


@pytest.fixture(scope="module")
def gateway(host, request) -> dict:
    """docker inspect of the gateway (HAProxy) in front of Triton."""
    return inspect_service(host, request, "gateway")


@pytest.fixture(scope="module")
def triton_replicas(host, request) -> list[dict]:
    """docker inspect of every triton container of the project (TRITON_REPLICAS of them)."""
    project = request.config.getoption("--compose-project", default="tritonops")
    ids = host.check_output(f"docker ps --all --quiet --filter label=com.docker.compose.project={project} "
                            "--filter label=com.docker.compose.service=triton").split()
    assert ids, f"no {project} triton container on {host.backend.hostname}"
    return json.loads(host.check_output(f"docker inspect {' '.join(ids)}"))


@pytest.fixture(scope="module")
def has_gpu(host) -> bool:
    """An NVIDIA (vendor 0x10de) display or 3D controller (class 0x03xxxx), not only its audio function."""
    found = host.run("grep -lx 0x10de /sys/bus/pci/devices/*/vendor | sed 's/vendor$/class/' | xargs -r grep -l '^0x03'")
    return found.stdout.strip() != ""


def test_docker_is_running_and_enabled(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_container_is_running_and_healthy(container):
    state = container["State"]
    assert state["Status"] == "running", state
    assert state["Health"]["Status"] == "healthy", state["Health"]["Log"][-1:]
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_gateway_is_running_and_healthy(gateway):
    state = gateway["State"]
    assert state["Status"] == "running", state
    # Healthy: at least one Triton behind it answers the gateway's inference check.
    assert state["Health"]["Status"] == "healthy", state["Health"]["Log"][-1:]
    assert gateway["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert gateway["HostConfig"]["ReadonlyRootfs"] is True
    assert gateway["Config"]["User"] not in ("", "0", "root"), "the gateway runs as root"


def test_triton_publishes_no_host_ports(triton_replicas):
    for replica in triton_replicas:
        name = replica["Name"].lstrip("/")
        assert not replica["HostConfig"]["PortBindings"], f"{name} publishes {replica['HostConfig']['PortBindings']}"
        published = {port: bound for port, bound in (replica["NetworkSettings"]["Ports"] or {}).items() if bound}
        assert not published, f"{name} is reachable from outside the stack: {published}"


@pytest.mark.parametrize("port", PORTS)
def test_gateway_publishes_the_server_port(gateway, port):
    bound = gateway["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
    assert str(port) in {b["HostPort"] for b in bound}, f"{port}/tcp of the gateway is published as {bound}"


def test_gateway_serves_the_current_release_config(host, root, gateway):
    mounts = {m["Destination"]: m["Source"] for m in gateway["Mounts"]}
    release = host.file(f"{root}/current").linked_to
    for name in ("haproxy.cfg", "tls.pem", "api-keys"):
        assert mounts[f"/usr/local/etc/haproxy/{name}"] == f"{release}/gateway/{name}", mounts
    folder = host.file(f"{release}/gateway")
    assert folder.user == "root" and folder.mode == 0o700, f"{folder.path}: {folder.user} {oct(folder.mode)}"


def test_server_runs_as_non_root(host, container):
    uid = host.check_output(f"docker exec {container['Name'].lstrip('/')} id -u")
    assert uid.strip() != "0", f"tritonserver runs as uid {uid}"


@pytest.mark.parametrize("port", PORTS)
def test_port_is_listening(host, port):
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening or host.socket(f"tcp://:::{port}").is_listening


def test_current_names_the_release_the_container_runs(host, root, triton_replicas, gateway):
    """current: a release whose files every container mounts and whose images (by content ID) they run."""
    current = host.file(f"{root}/current")
    assert current.is_symlink
    release = current.linked_to
    assert release.startswith(f"{root}/releases/") and host.file(release).is_directory, release
    override = yaml.safe_load(host.file(f"{release}/compose.override.yaml").content_string)
    for name, containers in (("triton", triton_replicas), ("gateway", [gateway])):
        pinned = override["services"][name]["image"]
        assert ":sha256-" in pinned, f"release {release} runs {name} by name ({pinned}), not by content ID"
        image_id = json.loads(host.check_output(f"docker image inspect {pinned}"))[0]["Id"]
        assert pinned.endswith(image_id.replace(":", "-")), f"{pinned} is image {image_id}"
        for c in containers:
            assert c["Image"] == image_id, f"{c['Name']} runs {c['Image']}, current release {release} names {image_id}"
    for replica in triton_replicas:
        mounts = {m["Destination"]: m["Source"] for m in replica["Mounts"]}
        assert mounts["/models"] == f"{release}/model_repository", f"{replica['Name']} mounts {mounts['/models']}"


def test_previous_is_another_kept_release(host, root):
    previous = host.file(f"{root}/previous")
    if not previous.exists:
        pytest.skip("no previous release (first deploy)")
    assert previous.is_symlink and host.file(previous.linked_to).is_directory, previous.linked_to
    assert previous.linked_to != host.file(f"{root}/current").linked_to


def test_release_files_match_the_repo(host, root, container, request):
    repository = Path(request.config.getoption("--model-repository", default=None) or settings.MODEL_REPOSITORY)
    files = sorted(p for p in repository.rglob("*") if p.is_file() and p.suffix != ".pyc")
    assert files, f"no files under {repository}"
    shipped = host.file(f"{root}/current").linked_to + "/model_repository"
    for path in files:
        rel = path.relative_to(repository)
        remote = host.file(f"{shipped}/{rel}")
        assert remote.exists, f"{rel} missing on the host"
        assert remote.sha256sum == hashlib.sha256(path.read_bytes()).hexdigest(), f"{rel} differs from the repo"
    mounts = {m["Destination"]: m["Source"] for m in container["Mounts"]}
    assert mounts["/models"] == shipped, f"the container serves {mounts['/models']}, current is {shipped}"


def test_firewall_is_on_for_ipv4_and_ipv6_before_docker(host):
    unit = host.service("tritonops-firewall")
    if not unit.is_enabled:
        pytest.skip("triton_firewall_enabled is false on this host")
    assert unit.is_running, "tritonops-firewall.service is not active"
    # One inet table (IPv4 and IPv6): host listeners (input) and Docker's DNATed ports (forward).
    table = json.loads(host.check_output("nft --json list table inet tritonops"))["nftables"]
    chains = {item["chain"]["name"]: item["chain"] for item in table if "chain" in item}
    assert {chains[name].get("hook") for name in ("input", "forward")} == {"input", "forward"}, chains
    sets = {item["set"]["name"]: item["set"]["type"] for item in table if "set" in item}
    assert sets == {"clients_v4": "ipv4_addr", "clients_v6": "ipv6_addr", "monitoring_v4": "ipv4_addr",
                    "monitoring_v6": "ipv6_addr"}, sets
    for chain in ("clients", "monitoring"):  # each ends with a bare drop: anyone not listed
        rules = [item["rule"]["expr"] for item in table if "rule" in item and item["rule"]["chain"] == chain]
        assert rules and rules[-1] == [{"drop": None}], f"chain {chain}: {rules}"
    # Loaded at boot before any network is up and before Docker starts the containers.
    order = host.check_output("systemctl show --property=Before --property=WantedBy --value tritonops-firewall").split()
    assert {"docker.service", "network-pre.target", "sysinit.target"} <= set(order), order
    # Fail closed: Docker requires it (a drop-in), so rules that do not load keep Docker stopped.
    needs = host.check_output("systemctl show --property=Requires --property=After --value docker.service").split()
    assert "tritonops-firewall.service" in needs, needs
    # Debian's nftables.service flushes the ruleset: its drop-in loads the table again after it.
    rules = yaml.safe_load((settings.ROOT / "ansible/roles/triton/defaults/main.yml").read_text())["triton_firewall_rules"]
    reapply = host.check_output("systemctl show --property=ExecStartPost --property=ExecReload --value nftables.service")
    assert reapply.count(rules) >= 2, reapply


def test_gpu_presence_is_recorded_as_a_local_fact(host, has_gpu):
    """nvidia_driver writes what it found where every play reads it (ansible_local.tritonops), GPU or not."""
    fact = json.loads(host.file("/etc/ansible/facts.d/tritonops.fact").content_string)
    assert fact["gpu_present"] is has_gpu and (fact["gpu_count"] > 0) is has_gpu, fact


def test_nvidia_smi_on_the_host(host, has_gpu):
    if not has_gpu:
        pytest.skip("no NVIDIA GPU on this host")
    assert "GPU 0" in host.check_output("nvidia-smi -L")


def test_toolkit_runtime_is_configured(host, has_gpu):
    if not has_gpu:
        pytest.skip("no NVIDIA GPU on this host")
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime", daemon
    assert host.file("/etc/cdi/nvidia.yaml").exists


def test_gpu_is_visible_inside_the_triton_container(host, has_gpu, container):
    if not has_gpu:
        pytest.skip("no NVIDIA GPU on this host")
    assert "GPU 0" in host.check_output(f"docker exec {container['Name'].lstrip('/')} nvidia-smi -L")
