"""The image and compose files, checked without an engine: one source of truth, valid compose."""
from __future__ import annotations

import re

import pytest
import yaml

from tritonops import settings
from tritonops.stack import compose, images
from tritonops.stack.images import IMAGES, ngc_base

FILES = [IMAGES / "Dockerfile", IMAGES / "cpu-base.Dockerfile", *sorted((IMAGES / "standins").glob("*")),
         *sorted(p for p in compose.COMPOSE_DIR.rglob("*") if p.is_file())]


def test_dockerfile_default_base_is_the_pinned_ngc_release():
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", (IMAGES / "Dockerfile").read_text(), re.M)
    assert default and default.group(1) == ngc_base(), "images/Dockerfile's BASE_IMAGE default != versions.env"


@pytest.mark.parametrize("key", ["TRITON_VERSION", "NGC_TAG", "CPU_TRITON_VERSION", "CPU_NGC_TAG", "TORCH_VERSION",
                                 "TRANSFORMERS_VERSION", "HTTP_PORT", "GRPC_PORT", "METRICS_PORT", "PROMETHEUS_TAG",
                                 "GRAFANA_TAG", "SHM_SIZE"])
def test_versions_and_ports_are_not_repeated(key):
    """versions.env is the one place: no image or compose file spells a value out (the NGC default
    above is the one checked exception)."""
    value = settings.get(key)
    for path in FILES:
        text = path.read_text()
        if path.name == "Dockerfile":
            text = re.sub(r"^ARG BASE_IMAGE=.*$", "", text, flags=re.M)
        assert not re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.])", text), f"{path} repeats {key}={value}"


def published_port(port) -> tuple[str, str, str]:
    """(host_ip, published, target): v1 prints "ip:published:target/tcp", v2 the long form."""
    if isinstance(port, str):
        return tuple(port.split("/")[0].split(":"))
    return str(port.get("host_ip")), str(port["published"]), str(port["target"])


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
@pytest.mark.compose
def test_compose_config_resolves(tmp_path, compose_cli, gpu):
    """`compose config` (no engine needed) resolves every variable and keeps the contract."""
    env = compose.write_env(tmp_path / "compose.env", {"HOST_HTTP_PORT": "18000"})
    stack = compose.Stack("tritonops-config-check", env, gpu=gpu, monitoring=True)
    proc = stack.run("config", capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr  # an unset ${VAR} warns and becomes ""
    config = yaml.safe_load(proc.stdout)
    triton = config["services"]["triton"]
    flavour = "gpu" if gpu else "cpu"
    assert triton["image"] == images.FLAVOURS[flavour].image  # <NGC_TAG>-gpu / <CPU_NGC_TAG>-cpu
    assert "ports" not in triton  # reached only through the gateway
    gateway = config["services"]["gateway"]
    assert gateway["image"] == images.gateway_image()
    mounts = [v.split(":")[:2][::-1] if isinstance(v, str) else (v["target"], v["source"])  # v1 / v2 syntax
              for v in gateway["volumes"]]
    assert dict(mounts) == {
        "/usr/local/etc/haproxy/haproxy.cfg": str(tmp_path / "compose.gateway" / "haproxy.cfg"),
        "/usr/local/etc/haproxy/tls.pem": str(tmp_path / "compose.gateway" / "tls.pem"),
        "/usr/local/etc/haproxy/api-keys": str(tmp_path / "compose.gateway" / "api-keys")}
    published = {published_port(p) for p in gateway["ports"]}
    bind = settings.get("BIND_ADDRESS")
    assert (bind, "18000", settings.get("HTTP_PORT")) in published
    assert (bind, settings.get("GRPC_PORT"), settings.get("GRPC_PORT")) in published
    volume = triton["volumes"][0]
    assert volume["target"] == "/models" and volume["read_only"] is True
    assert volume["source"] == str(settings.MODEL_REPOSITORY)
    devices = triton.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    assert (devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]) is gpu
    assert set(config["services"]) == {"triton", "gateway", "prometheus", "grafana"}
    # locally built images are never fetched by tag; the monitoring history lives in named volumes
    # (compose v1 1.29 drops pull_policy when it merges a second file: there the GPU stack may pull)
    if not gpu or stack.command()[0] != "docker-compose":
        assert triton["pull_policy"] == gateway["pull_policy"] == "never"
    assert {"prometheus-data", "grafana-data"} <= set(config.get("volumes", {}))
