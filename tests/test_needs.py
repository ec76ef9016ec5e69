"""The needs (tests/needs.py): an unmarked test finds neither compose nor an engine, a marked one does.

.ci/run also runs the tests marked docker or compose on a machine view without Docker (.ci/without-docker)
and requires 0 failures; the guard shown here (tests/conftest.py) catches an unmarked test in every run.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from needs import NEEDS, UNMARKED_DOCKER_HOST

from tritonops.stack import compose


def test_an_unmarked_test_finds_no_compose_and_no_engine():
    with pytest.raises(compose.ComposeError, match="reached for compose unmarked: mark it compose or docker"):
        compose.compose_command()
    if not shutil.which("docker"):
        return  # nothing to reach for
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    assert docker.returncode != 0 and "mark-the-test-docker.sock" in docker.stderr, docker


@pytest.mark.compose
def test_a_marked_test_finds_them():
    assert compose.compose_command()[0] in ("docker", "docker-compose")
    assert os.environ.get("DOCKER_HOST") != UNMARKED_DOCKER_HOST


def test_every_need_has_an_enabling_command_and_a_limit():
    for need in NEEDS.values():
        assert need.enable and need.cost and need.timeout_s >= 300, need
