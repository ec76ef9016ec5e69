"""The optional baked image (make image BAKE=1): the model repository inside, nothing mounted."""
from __future__ import annotations

import io
import time

import pytest

from tritonops import images, settings, smoke
from tritonops.server import free_port

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def baked(built_images, docker_client):
    ref = images.build_baked(images.FLAVOURS["cpu"])
    yield ref
    docker_client.images.remove(ref, noprune=False)


def test_baked_image_serves_without_a_mount(baked, docker_client):
    http, grpc = free_port(), free_port()
    container = docker_client.containers.run(
        baked, detach=True, init=True, read_only=True, tmpfs={"/tmp": ""}, shm_size=settings.get("SHM_SIZE"),
        ports={f"{settings.get('HTTP_PORT')}/tcp": ("127.0.0.1", http),
               f"{settings.get('GRPC_PORT')}/tcp": ("127.0.0.1", grpc)})
    try:
        assert container.attrs["Mounts"] == []
        deadline = time.monotonic() + 120
        while True:
            container.reload()
            state = container.attrs["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                break
            assert state["Status"] in ("created", "running"), container.logs(tail=30).decode()
            assert time.monotonic() < deadline, container.logs(tail=30).decode()
            time.sleep(1)
        smoke.run(f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", out=io.StringIO())
        listing = container.exec_run(["sh", "-c", "find /models -name __pycache__ | wc -l"]).output.strip()
        assert listing == b"0"
    finally:
        container.remove(force=True)
