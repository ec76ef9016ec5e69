"""The optional baked image (make image BAKE=1): the model repository inside, the embed pipeline's
extracted files included (the plain image has none: test_image_models.py), nothing mounted."""
from __future__ import annotations

import io
import time

import embedclient
import pytest

from tritonops import settings
from tritonops.models import fetch
from tritonops.serving import smoke
from tritonops.stack import images
from tritonops.serving.server import free_port

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
        environment={"TRITON_MANAGEMENT_OPEN": "1"},  # no key mounted: open on purpose (test_restricted_stack.py)
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
        assert embedclient.problems(f"127.0.0.1:{http}", f"127.0.0.1:{grpc}") == []
        for manifest in fetch.manifests(settings.MODEL_REPOSITORY):  # the MiniLM files, as pinned
            folder = f"/models/{manifest.parent.relative_to(settings.MODEL_REPOSITORY)}"
            checked = container.exec_run(["sh", "-c", f"cd {folder} && sha256sum --check --strict {manifest.name}"])
            assert checked.exit_code == 0, checked.output.decode()
        listing = container.exec_run(["sh", "-c", "find /models -name __pycache__ | wc -l"]).output.strip()
        assert listing == b"0"
    finally:
        container.remove(force=True)
