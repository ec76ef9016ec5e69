"""The triton role's CVE guard (tasks/cve-guard.yml reads the image's version, the cve_guard role judges
it), run for real by ansible-playbook against images in this machine's engine.

Tiny images (FROM scratch, metadata only) carry a Triton version the way the real ones do: env
TRITON_SERVER_VERSION (set by the NGC base or images/cpu-base.Dockerfile) and/or the label
com.nvidia.tritonserver.version. The CPU project image is checked too when it has been built.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from ci_policy import skip_or_fail
import yaml

from tritonops import settings
from tritonops.stack import images

from playbook_runner import LOGS, ansible_playbook

CVES = yaml.safe_load((settings.ROOT / "ansible/roles/triton/vars/cves.yml").read_text())["triton_cves"]
PLAY = settings.ROOT / "tests/ansible/cve_guard_play.yml"
STANDIN, PATCHED = settings.get("CPU_TRITON_VERSION"), settings.get("TRITON_VERSION")


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def exposed(triton: str) -> list[str]:
    return [c["id"] for c in CVES if version(c["fixed_in"]) > version(triton)]


def test_the_gpu_pin_has_every_fix_and_the_standin_has_not():
    """versions.env's GPU Triton is at or past every fix; the CPU stand-in is not (so the guard matters)."""
    assert exposed(PATCHED) == [], f"TRITON_VERSION={PATCHED} predates fixes in roles/triton/vars/cves.yml"
    august_2025 = {"CVE-2025-23310", "CVE-2025-23311", "CVE-2025-23319", "CVE-2025-23320", "CVE-2025-23334"}
    assert august_2025 <= set(exposed(STANDIN))
    for cve in CVES:
        assert set(cve) == {"id", "fixed_in", "ngc", "confirmed", "what", "source"}, cve
        assert cve["source"].startswith("https://"), cve


@pytest.fixture(scope="module")
def engine():
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine here
        skip_or_fail(f"no Docker engine: {exc}", need="docker")


@pytest.fixture(scope="module")
def image(engine):
    """make(env_version, label_version) -> a metadata-only image tagged for this test run; removed after."""
    made = []

    def make(env: str | None, label: str | None) -> str:
        ref = f"tritonops-test/cve-guard:{uuid.uuid4().hex[:10]}"
        lines = ["FROM scratch", *([f"ENV TRITON_SERVER_VERSION={env}"] if env else []),
                 *([f"LABEL com.nvidia.tritonserver.version={label}"] if label else []), "LABEL purpose=cve-guard-test"]
        subprocess.run(["docker", "build", "-q", "-t", ref, "-"], input="\n".join(lines) + "\n", text=True, check=True,
                       capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
        made.append(ref)
        return ref

    yield make
    subprocess.run(["docker", "rmi", *made], capture_output=True)


def guard(ref: str, name: str, extra_args: list[str] = (), **extra):
    extras = {"tritonops_repo_root": str(settings.ROOT), "triton_image": ref, "triton_gpus": False,
              "ansible_python_interpreter": sys.executable, **extra}
    return ansible_playbook("-i", "localhost,", str(PLAY), "-e", json.dumps(extras), *extra_args,
                            log=LOGS / f"cve-guard-{name}.log", timeout=300)


@pytest.mark.docker
def test_standin_triton_is_stopped_with_its_cves(image):
    ref = image(STANDIN, STANDIN)
    result = guard(ref, "standin")
    assert result.rc != 0, result.output[-4000:]
    assert f"Not deploying {ref}: its Triton {STANDIN} (read from the image)" in result.output, result.output[-4000:]
    for cve in exposed(STANDIN):
        assert cve in result.output, f"{cve} missing from the guard's message:\n{result.output[-4000:]}"
    assert "triton_allow_vulnerable: true" in result.output


@pytest.mark.docker
def test_allow_vulnerable_deploys_it_and_still_lists_the_cves(image):
    result = guard(image(STANDIN, STANDIN), "allowed", triton_allow_vulnerable=True)
    assert result.rc == 0, result.output[-4000:]
    assert "triton_allow_vulnerable is true" in result.output
    assert all(cve in result.output for cve in exposed(STANDIN))


@pytest.mark.docker
def test_patched_triton_passes(image):
    result = guard(image(PATCHED, PATCHED), "patched")
    assert result.rc == 0, result.output[-4000:]
    assert not any(cve["id"] in result.output for cve in CVES), result.output[-4000:]


@pytest.mark.docker
def test_version_comes_from_the_base_env_before_the_label(image):
    """The base image's TRITON_SERVER_VERSION is what runs; a label the project build set wrongly loses."""
    result = guard(image(STANDIN, PATCHED), "env-wins")
    assert result.rc != 0 and f"its Triton {STANDIN}" in result.output, result.output[-4000:]
    labelled = guard(image(None, STANDIN), "label-only")
    assert labelled.rc != 0 and f"its Triton {STANDIN}" in labelled.output, labelled.output[-4000:]


@pytest.mark.docker
def test_image_without_a_version_is_stopped(image):
    result = guard(image(None, None), "unknown")
    assert result.rc != 0
    assert "has no Triton version" in result.output, result.output[-4000:]


@pytest.mark.docker
def test_check_mode_before_the_image_exists_reads_versions_env(engine):
    """A --check run before the first build or pull: the flavour's versions.env Triton, said so."""
    missing = f"tritonops-test/cve-guard:absent-{uuid.uuid4().hex[:10]}"
    cpu = guard(missing, "check-cpu", extra_args=["--check"])
    assert cpu.rc != 0 and f"its Triton {STANDIN} (read from versions.env" in cpu.output, cpu.output[-4000:]
    gpu = guard(missing, "check-gpu", extra_args=["--check"], triton_gpus=True)
    assert gpu.rc == 0, gpu.output[-4000:]
    real = guard(missing, "absent", triton_gpus=True)  # not --check: a missing image is never assumed patched
    assert real.rc != 0 and "is not on the host or has no Triton version" in real.output, real.output[-4000:]


@pytest.mark.docker
def test_the_built_cpu_image_is_stopped(engine):
    flavour = images.FLAVOURS["cpu"]
    if not images.image_exists(flavour.image):
        skip_or_fail(f"{flavour.image} is not built (make image)", need="docker")
    result = guard(flavour.image, "cpu-image")
    assert result.rc != 0 and f"its Triton {STANDIN} (read from the image)" in result.output, result.output[-4000:]


def test_the_toolkit_pin_has_every_confirmed_fix():
    """versions.env's container toolkit is at or past every fix in the toolkit role's CVE list; a CVE
    whose fixed release is unknown (fixed_in: null) is printed, so it stays in sight."""
    toolkit = yaml.safe_load((settings.ROOT / "ansible/roles/nvidia_container_toolkit/vars/cves.yml").read_text())
    cves = toolkit["nvidia_container_toolkit_cves"]
    pin = settings.get("NVIDIA_CONTAINER_TOOLKIT_VERSION").split("-")[0]  # apt's 1.17.8-1: upstream 1.17.8
    behind = [c["id"] for c in cves if c["fixed_in"] and version(c["fixed_in"]) > version(pin)]
    assert behind == [], f"NVIDIA_CONTAINER_TOOLKIT_VERSION={pin} predates the fixes of {behind}"
    assert {"CVE-2025-23266", "CVE-2025-23267"} <= {c["id"] for c in cves if c["fixed_in"] == pin}  # the pin's reason
    unknown = [c["id"] for c in cves if c["fixed_in"] is None]
    print(f"\ncontainer toolkit {pin}: fixed release unknown for {unknown or 'none'} (check NVIDIA's bulletins)")
