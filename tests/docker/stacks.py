"""Compose stacks for the Docker suite, under project names of their own. Test modules import
start_stack by name (a helper in conftest.py is ambiguous when several suites run in one session)."""
from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

import pytest

from tritonops import settings
from tritonops.models import linear
from tritonops.stack import compose
from tritonops.serving.server import free_port


def linear_only_copy(dest: Path) -> Path:
    """A model repository at dest holding a copy of the linear model only. A copy, not
    conftest.linear_only's symlink: the container sees the mounted folder and nothing it points to."""
    shutil.copytree(settings.MODEL_REPOSITORY / linear.MODEL, dest / linear.MODEL,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def start_stack(tmp_path, monitoring: bool = False, services=("triton", "gateway"), embed: bool = False,
                **overrides) -> compose.Stack:
    """compose/compose.yaml, unmodified, under a project name of its own, published on free
    127.0.0.1 ports; `overrides` are env-file values (TLS, keys, replicas...).

    embed=True mounts model_repository as `make up` does (linear and the embed pipeline side by side);
    by default the stack mounts a linear-only copy unless MODEL_REPOSITORY is given: stacks about the
    containers, the gateway or healing do not need embed, which costs each Triton ~10 s more to start,
    ~1 GB of memory and three more Python stubs (a drill that kills "the" stub must hit linear's)."""
    if not embed:
        overrides.setdefault("MODEL_REPOSITORY", str(linear_only_copy(Path(tmp_path) / "linear-only")))
    overrides = {"BIND_ADDRESS": "127.0.0.1", **{key: str(free_port()) for key in compose.HOST_PORTS}, **overrides}
    # What `make up` does: a sandboxed engine (this testbed) gets its own hard memlock limit, said aloud.
    overrides.update(compose.memlock_override(compose.environment(overrides)))
    env_file = compose.write_env(tmp_path / "compose.env", overrides)
    project = f"tritonops-test-{os.getpid()}-{secrets.token_hex(3)}"
    stack = compose.Stack(project, env_file, monitoring=monitoring)
    try:
        stack.up(list(services))
    except BaseException:
        stack.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)
        raise
    return stack


def wait_for(what: str, check, timeout: float = 60, every: float = 2):
    """Poll check() until it returns a truthy value; fail with what and the last value."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"{what} not seen after {timeout:.0f}s (last: {last!r})")
