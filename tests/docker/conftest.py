"""Docker suite: a real engine, the images built from images/, the compose stack on free ports.

Without an engine (or compose, or root for the first debootstrap) the tests skip with the reason;
with CI=true they fail instead, so a missing install step cannot pass as a skip.
"""
from __future__ import annotations

import os

import pytest
from ci_policy import skip_or_fail
from stacks import start_stack

from tritonops.stack import compose, images

@pytest.fixture(scope="session")
def compose_cli() -> tuple[str, ...]:
    try:
        return compose.compose_command()
    except compose.ComposeError as exc:
        skip_or_fail(str(exc), need="compose")


@pytest.fixture(scope="session")
def docker_client(compose_cli):
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # the SDK raises several types for "no engine"
        skip_or_fail(f"no Docker engine at DOCKER_HOST/unix:///var/run/docker.sock ({exc}); "
                     "start one (docs/compose.md)", need="docker")
    yield client
    client.close()


@pytest.fixture(scope="session")
def built_images(docker_client) -> dict[str, str]:
    """The CPU project image, the gateway and the Prometheus stand-in, built now through Docker's
    layer cache, so the tests run what images/ says. The bases are built only when absent (debootstrap is slow)."""
    if not images.image_exists(images.debian_base()) and os.geteuid() != 0:
        skip_or_fail(f"{images.debian_base()} is missing and debootstrap needs root (sudo make base-image)", need="root")
    try:
        project = images.build_image(images.FLAVOURS["cpu"])
        gateway = images.build_gateway()
        prometheus = images.build_standins()[0]
    except images.BuildError as exc:
        pytest.fail(f"image build failed: {exc}")
    return {"triton": project, "gateway": gateway, "prometheus": prometheus}


@pytest.fixture(scope="module")
def stack(built_images, tmp_path_factory, request):
    """triton + gateway + prometheus; taken down (volumes, networks) even when a test fails. A module
    that sets STACK_SERVES_EMBED = True gets model_repository as `make up` mounts it (embed too); the
    others a linear-only copy (stacks.start_stack)."""
    # Grafana has no offline stand-in here: its dashboard is checked against Prometheus instead.
    stack = start_stack(tmp_path_factory.mktemp("compose"), monitoring=True,
                        services=("triton", "gateway", "prometheus"),
                        embed=getattr(request.module, "STACK_SERVES_EMBED", False))
    try:
        yield stack
    finally:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)
