"""The images' pip installs: hashed locks that match versions.env and the base's Python, and a
build that refuses a wheel whose sha256 is not the lock's."""
from __future__ import annotations

import os
import re
import subprocess

import pytest
from packaging import tags
from packaging.utils import parse_wheel_filename

from tritonops import settings
from tritonops.stack import images

LOCKS = {"cpu": [images.FLAVOURS["cpu"].lock, images.CPU_BASE_LOCK], "gpu": [images.FLAVOURS["gpu"].lock]}


def locked_files(path) -> list[str]:
    """The wheel file names the lock records under each pin (`    # <file>` lines)."""
    return re.findall(r"^    # (\S+\.whl)$", path.read_text(), re.M)


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_lock_pins_versions_env_with_a_hash_for_every_wheel(name):
    flavour = images.FLAVOURS[name]
    images.check_lock(flavour)  # torch, transformers, numpy (and the CPU base's pytriton) as versions.env pins them
    for path in LOCKS[name]:
        text = path.read_text()
        pins = images.read_lock(path)  # raises on a pin without --hash
        assert len(pins) == text.count("--hash=sha256:") == len(locked_files(path)), path


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_locked_wheels_are_for_the_base_python_and_platform(name):
    """The GPU lock cannot be installed here (no NGC image): each locked file must still carry a tag
    that pip accepts on the base's CPython (NGC_PYTHON_VERSION) and manylinux x86_64."""
    flavour = images.FLAVOURS[name]
    version = tuple(int(part) for part in flavour.python.split("."))
    cp = f"cp{version[0]}{version[1]}"
    supported = {*tags.cpython_tags(version, [cp], images.PLATFORMS),
                 *tags.compatible_tags(version, cp, images.PLATFORMS)}
    for path in LOCKS[name]:
        for filename in locked_files(path):
            assert parse_wheel_filename(filename)[3] & supported, f"{path.name}: {filename} does not install on {cp}"


def test_a_stale_lock_is_refused(monkeypatch):
    monkeypatch.setattr(images, "wheel_pins", lambda: ["torch==0.0.1", "transformers==0.0.1", "numpy==0.0.1"])
    with pytest.raises(images.BuildError, match="run `make lock-images`"):
        images.check_lock(images.FLAVOURS["cpu"])


@pytest.fixture(scope="module")
def cpu_wheels(docker_client):
    flavour = images.FLAVOURS["cpu"]
    for lock in LOCKS["cpu"]:
        if not images.have_locked_wheels(flavour, lock):
            images.download_wheels(flavour)
    return flavour.wheels


@pytest.mark.docker
@pytest.mark.parametrize("dockerfile, lock, victim", [
    ("Dockerfile", "requirements-cpu.txt", "transformers-"),
    ("cpu-base.Dockerfile", "requirements-cpu-base.txt", "nvidia_pytriton-"),
], ids=["project-image", "cpu-base"])
def test_a_tampered_wheel_fails_the_build(cpu_wheels, tmp_path, dockerfile, lock, victim):
    """One byte appended to a locked wheel: pip --require-hashes stops the build stage."""
    wheels = sorted(cpu_wheels.glob("*.whl"))
    original = next(w for w in wheels if w.name.startswith(victim))
    tampered = tmp_path / original.name
    tampered.write_bytes(original.read_bytes() + b"\0")
    context = images._context(images.IMAGES / dockerfile, [tampered if w == original else w for w in wheels],
                              images.IMAGES / lock)
    images.stage_certs()
    args = {"BASE_IMAGE": images.FLAVOURS["cpu"].base, "DEBIAN_BASE": images.debian_base(),
            **images.build_args(images.FLAVOURS["cpu"]), "PYTRITON_VERSION": settings.get("PYTRITON_VERSION")}
    cmd = ["docker", "build", "--network", "host", "--target", "build", "--rm", "--force-rm"]
    for key, value in args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    done = subprocess.run([*cmd, "-"], input=context, capture_output=True,
                          env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=900)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0, output[-3000:]
    assert "DO NOT MATCH THE HASHES" in output, output[-3000:]
    assert original.name.split("-")[0] in output.split("DO NOT MATCH THE HASHES", 1)[1], output[-3000:]
