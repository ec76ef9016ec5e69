"""`make up MODEL_REPOSITORY=<a repository holding only a user's model>`, for real: compose/compose.yaml
unmodified under a project name of its own, the CPU image and the gateway from images/, the repository
tests/repos.py builds (tally_kit: INT32 and BYTES in, no linear anywhere). Both containers turn healthy
(the gateway's check is the model's own sample, tritonops.stack.gatewaycheck) and the model answers through
the gateway's published ports, every answer compared with its descriptor."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from repos import BYOM_MODEL, build_byom_repository

from tritonops import settings
from tritonops.serving import smoke

from stacks import start_stack

pytestmark = pytest.mark.docker


def test_a_user_repository_is_healthy_and_answers_through_the_gateway(built_images, docker_client, tmp_path):
    repo = build_byom_repository(tmp_path)
    stack = start_stack(tmp_path, MODEL_REPOSITORY=str(repo))  # returns once every container is healthy
    try:
        config = Path(stack.env["GATEWAY_CONFIG"]).read_text()
        sent = re.findall(r"^    http-check send meth \S+ uri (\S+) ", config, re.M)
        assert sent == [f"/v2/models/{BYOM_MODEL}/infer"] * 2, sent  # HTTP and gRPC backends, the user's model only
        assert f"/v2/models/{settings.MODEL_NAME}/" not in config
        for cid in stack.container_ids():
            container = docker_client.containers.get(cid)
            assert container.attrs["State"].get("Health", {}).get("Status") == "healthy", container.name
        env = stack.env
        out = io.StringIO()
        smoke.run(f"{env['BIND_ADDRESS']}:{env['HOST_HTTP_PORT']}", f"{env['BIND_ADDRESS']}:{env['HOST_GRPC_PORT']}",
                  out=out, repository=repo)
        assert out.getvalue().count("ok  ") == 3 and out.getvalue().count(f"  {BYOM_MODEL}  ") == 3, out.getvalue()
    finally:
        stack.down()
