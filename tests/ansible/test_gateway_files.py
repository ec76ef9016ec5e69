"""The triton role installs the gateway files `make up` writes: its tasks/host-files.yml renders them on the
controller (tritonops.stack.hostfiles), its tasks/gateway.yml copies them into the release, owned by root, 0644 in
a 0700 folder, checked with haproxy -c in the gateway image; against tritonops.stack.compose.write_gateway, byte
for byte, with TLS, API keys and replicas (test_host_files.py compares the rendered files for more hosts,
without an engine). The role's `validate` needs a Docker engine with the gateway image (make image) and root
(the files are owned by root)."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tritonops import settings
from tritonops.stack import compose, images

from certs import self_signed
from ci_policy import skip_or_fail
from playbook_runner import role_tasks, triton_tasks_on_localhost

pytestmark = [pytest.mark.docker, pytest.mark.root]
FILES = ("haproxy.cfg", "tls.pem", "api-keys")


@pytest.fixture(scope="module", autouse=True)
def needs_root_and_the_gateway_image():
    try:
        present = images.image_exists(images.gateway_image())
    except images.BuildError as exc:
        skip_or_fail(str(exc), need="docker")
    if not present:
        skip_or_fail(f"{images.gateway_image()} is not built (make image): the role validates with its haproxy", need="docker")


def role_files(tmp_path: Path, extra: dict) -> Path:
    """Run only the role's host files and gateway tasks on this machine; returns <release>/gateway."""
    release = tmp_path / "release"
    release.mkdir()
    result = triton_tasks_on_localhost(tmp_path, "gateway-files", [role_tasks("host-files.yml"), role_tasks("gateway.yml")],
                                       {"triton_release_dir": str(release), **extra})
    assert result.rc == 0, result.output[-4000:]
    return release / "gateway"


def compose_files(tmp_path: Path, overrides: dict[str, str]) -> Path:
    directory = tmp_path / "compose-gateway"
    compose.write_gateway(directory, {**settings.versions(), **overrides})
    return directory


def assert_same(ours: Path, theirs: Path) -> None:
    assert stat.S_IMODE(ours.stat().st_mode) == 0o700, oct(ours.stat().st_mode)
    for name in FILES:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), f"{name} differs from compose's"
        assert stat.S_IMODE((ours / name).stat().st_mode) == 0o644


def test_tls_keys_and_replicas_match_compose(tmp_path):
    tls = self_signed(tmp_path / "tls")
    cert, key = tls.cert, tls.key
    keys = ["k-one" * 7, "k-two" * 7]  # gateway.MIN_KEY_LENGTH characters and more
    (tmp_path / "keys").write_text("".join(f"{k}\n" for k in keys))
    (tmp_path / "keys").chmod(0o600)
    ours = role_files(tmp_path, {"triton_gateway_tls_cert": str(cert), "triton_gateway_tls_key": str(key),
                                 "triton_gateway_api_keys": keys, "triton_compose_env": {"TRITON_REPLICAS": "2"}})
    theirs = compose_files(tmp_path, {"GATEWAY_TLS_CERT": str(cert), "GATEWAY_TLS_KEY": str(key),
                                      "GATEWAY_API_KEYS_FILE": str(tmp_path / "keys"), "TRITON_REPLICAS": "2"})
    assert_same(ours, theirs)
    config = (ours / "haproxy.cfg").read_text()
    assert config.count("ssl crt /usr/local/etc/haproxy/tls.pem") == 2 and "-f /usr/local/etc/haproxy/api-keys" in config
    assert "server triton2 triton:" in config
    assert b"PRIVATE KEY" in (ours / "tls.pem").read_bytes()
