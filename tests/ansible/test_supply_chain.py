"""Supply chain, for real on this machine: an apt signing key is installed only when its fingerprint
matches the pin (the apt_signing_key role against throwaway GPG keys served over 127.0.0.1), and an
image tarball is docker-loaded only when its sha256 matches the .sha256 written at save time (the
triton role's image-load.yml against a tiny image saved by tritonops.stack.images). Needs root (the roles
write root-owned files), gpg, and for the tarball cases a Docker engine."""
from __future__ import annotations

import functools
import http.server
import json
import stat
import subprocess
import sys
import tarfile
import threading
import uuid
from pathlib import Path

import pytest
import yaml

from tritonops.stack import images

from ci_policy import skip_or_fail
from needs import require
from playbook_runner import ANSIBLE_DIR, LOGS, PlayResult, ansible_playbook

# The vendors' published primary key fingerprints (docs/security.md, Supply chain).
pytestmark = pytest.mark.root  # the roles write root-owned files
DOCKER_KEY = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"  # docker/docs engine/install/debian.md
NVIDIA_KEY = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"  # NVIDIA/nvidia-container-toolkit issue 1460


def run_tasks(tmp_path: Path, name: str, task: dict, variables: dict, *extra: str) -> PlayResult:
    """One play on this machine (connection local) with one task; variables as extra vars."""
    playbook = tmp_path / f"{name}.yml"
    playbook.write_text(json.dumps([{
        "name": name, "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(ANSIBLE_DIR / "group_vars" / "all.yml")], "tasks": [task]}]))
    return ansible_playbook("-i", "localhost,", str(playbook), "-e",
                            json.dumps({"ansible_python_interpreter": sys.executable, **variables}), *extra,
                            log=LOGS / f"supply-chain-{tmp_path.name}.log", timeout=300)


# --- apt signing keys ---

@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    """Two throwaway keys, "right" and "other", exported (armored) into a folder served over HTTP;
    "both.asc" holds the two together. Returns {name: fingerprint} plus "url" (the folder)."""
    require("gpg")
    home, served = tmp_path_factory.mktemp("gnupg"), tmp_path_factory.mktemp("served")
    home.chmod(0o700)
    gpg = ["gpg", "--batch", "--no-tty", "--homedir", str(home)]
    fingerprints = {}
    for name in ("right", "other"):
        subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.invalid>",
                        "ed25519", "sign", "never"], check=True, capture_output=True)
        listing = subprocess.run([*gpg, "--with-colons", "--list-keys", f"{name}@example.invalid"],
                                 check=True, capture_output=True, text=True).stdout
        fingerprints[name] = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        exported = subprocess.run([*gpg, "--armor", "--export", f"{name}@example.invalid"],
                                  check=True, capture_output=True).stdout
        (served / f"{name}.asc").write_bytes(exported)
    (served / "both.asc").write_bytes((served / "right.asc").read_bytes() + (served / "other.asc").read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {**fingerprints, "url": f"http://127.0.0.1:{server.server_address[1]}", "dir": served}
    server.shutdown()
    server.server_close()
    # key generation started a gpg-agent for this homedir: end it with the keys
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=True, capture_output=True)


def install_key(tmp_path: Path, keys: dict, served: str, pin: str, *extra: str) -> tuple[PlayResult, Path]:
    keyring = tmp_path / "keyrings" / "test.asc"
    task = {"name": "The pinned-key tasks", "ansible.builtin.include_role": {"name": "apt_signing_key"}}
    result = run_tasks(tmp_path, "apt-key", task, {
        "apt_signing_key_repo": "Test apt repo", "apt_signing_key_url": f"{keys['url']}/{served}",
        "apt_signing_key_fingerprint": pin, "apt_signing_key_path": str(keyring)}, *extra)
    return result, keyring


def spaced(fingerprint: str) -> str:
    """As vendors print fingerprints (and the defaults pin them): groups of four."""
    return " ".join(fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4))


def test_key_with_the_pinned_fingerprint_is_installed(tmp_path, keys):
    result, keyring = install_key(tmp_path, keys, "right.asc", spaced(keys["right"]).lower())
    assert result.rc == 0, result.output[-4000:]
    assert keyring.read_bytes() == (keys["dir"] / "right.asc").read_bytes()
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o644
    again, _ = install_key(tmp_path, keys, "right.asc", keys["right"])
    assert again.rc == 0 and again.recap()["localhost"]["changed"] == 0, again.output[-4000:]


def test_key_with_another_fingerprint_stops_the_play_and_is_not_installed(tmp_path, keys):
    result, keyring = install_key(tmp_path, keys, "other.asc", keys["right"])
    assert result.rc != 0
    assert f"Test apt repo: the key from {keys['url']}/other.asc has fingerprint {keys['other']}" in result.output
    assert f"expected {keys['right']}. Not installed." in result.output
    assert not keyring.exists() and not keyring.parent.exists()


def test_an_extra_key_beside_the_pinned_one_is_refused(tmp_path, keys):
    # apt would trust every key in a Signed-By file, so one more key is as bad as a wrong one.
    result, keyring = install_key(tmp_path, keys, "both.asc", keys["right"])
    assert result.rc != 0
    assert f"has fingerprint {keys['right']}, {keys['other']}; expected {keys['right']}" in result.output
    assert not keyring.exists()


def test_a_page_that_is_no_key_is_refused(tmp_path, keys):
    (keys["dir"] / "page.html").write_text("<html>moved</html>")
    result, keyring = install_key(tmp_path, keys, "page.html", keys["right"])
    assert result.rc != 0
    assert "has fingerprint none (" in result.output and f"expected {keys['right']}" in result.output
    assert not keyring.exists()


def test_check_mode_verifies_the_pin_and_installs_nothing(tmp_path, keys):
    wrong, keyring = install_key(tmp_path, keys, "other.asc", keys["right"], "--check")
    assert wrong.rc != 0 and f"has fingerprint {keys['other']}; expected {keys['right']}" in wrong.output
    right, keyring = install_key(tmp_path, keys, "right.asc", keys["right"], "--check")
    assert right.rc == 0 and right.recap()["localhost"]["changed"] >= 1, right.output[-4000:]
    assert not keyring.exists()


@pytest.mark.parametrize(("role", "tasks", "pin_var", "fingerprint"), [
    ("docker", "repo-Debian.yml", "docker_apt_key_fingerprint", DOCKER_KEY),
    ("nvidia_container_toolkit", "packages-repo-Debian.yml", "nvidia_container_toolkit_key_fingerprint", NVIDIA_KEY),
])
def test_vendor_repos_use_the_checked_key_with_the_published_pin(role, tasks, pin_var, fingerprint):
    """The wiring the real repos (unreachable here) rely on: each role pins its vendor's fingerprint,
    checks the key with apt_signing_key first, and its deb822 source is signed by that checked file."""
    defaults = yaml.safe_load((ANSIBLE_DIR / "roles" / role / "defaults" / "main.yml").read_text())
    assert defaults[pin_var].replace(" ", "").upper() == fingerprint
    steps = yaml.safe_load((ANSIBLE_DIR / "roles" / role / "tasks" / tasks).read_text())
    modules = [next(k for k in step if k.startswith("ansible.")) for step in steps]
    check = next(i for i, step in enumerate(steps)  # the key check itself, not its prerequisites.yml
                 if step.get("ansible.builtin.import_role", {}).get("name") == "apt_signing_key" and "vars" in step)
    source = modules.index("ansible.builtin.deb822_repository")
    assert check < source
    assert steps[check]["vars"]["apt_signing_key_fingerprint"] == f"{{{{ {pin_var} }}}}"
    assert steps[source]["ansible.builtin.deb822_repository"]["signed_by"] == steps[check]["vars"]["apt_signing_key_path"]


# --- image tarball digests ---

@pytest.fixture
def saved_image(tmp_path):
    """An empty scratch image saved by tritonops.stack.images (tarball + .sha256), then removed from the
    engine so that only the role's docker load can bring it back."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine here
        skip_or_fail(f"no Docker engine: {exc}", need="docker")
    ref = f"tritonops-test/empty:sha-{uuid.uuid4().hex[:12]}"
    empty = tmp_path / "empty-rootfs.tar"
    tarfile.open(empty, "w").close()
    subprocess.run(["docker", "import", str(empty), ref], check=True, capture_output=True)
    tarball = images._save(ref, tmp_path / "controller" / "empty.tar")
    client.images.remove(ref)
    yield ref, tarball, client
    if images.image_exists(ref):
        client.images.remove(ref)


def load_images(tmp_path: Path, ref: str, tarball: Path) -> PlayResult:
    task = {"name": "The role's image-load tasks",
            "ansible.builtin.include_role": {"name": "triton", "tasks_from": "image-load.yml"}}
    return run_tasks(tmp_path, "image-load", task, {
        "triton_root": str(tmp_path / "host"),
        "triton_images": [{"image": ref, "tarball": str(tarball), "knob": "triton_image_tarball"}]})


@pytest.mark.docker
def test_save_writes_a_sha256sum_file(saved_image):
    _, tarball, _ = saved_image
    check = subprocess.run(["sha256sum", "--check", images.digest_path(tarball).name], cwd=tarball.parent,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.docker
def test_tarball_matching_its_digest_is_loaded(tmp_path, saved_image):
    ref, tarball, _ = saved_image
    result = load_images(tmp_path, ref, tarball)
    assert result.rc == 0, result.output[-4000:]
    assert images.image_exists(ref)


@pytest.mark.docker
def test_tarball_changed_after_save_is_not_loaded(tmp_path, saved_image):
    ref, tarball, _ = saved_image
    expected = images.digest_path(tarball).read_text().split()[0]
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped after the .sha256 was written
    tarball.write_bytes(data)
    result = load_images(tmp_path, ref, tarball)
    assert result.rc != 0
    host_copy = tmp_path / "host" / "images" / tarball.name
    actual = subprocess.run(["sha256sum", str(host_copy)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert actual != expected
    assert (f"{host_copy} (copied from {tarball}) has sha256 {actual}, but {tarball}.sha256 expects {expected}"
            in result.output), result.output[-4000:]
    assert not images.image_exists(ref)


@pytest.mark.docker
def test_tarball_without_digest_is_refused(tmp_path, saved_image):
    ref, tarball, _ = saved_image
    images.digest_path(tarball).unlink()
    result = load_images(tmp_path, ref, tarball)
    assert result.rc != 0
    assert f"{tarball}.sha256 does not exist" in result.output and "run `make image-tarball`" in result.output
    assert not (tmp_path / "host" / "images").exists() and not images.image_exists(ref)
