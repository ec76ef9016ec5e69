"""The needs (tests/needs.py): an unmarked test finds neither compose nor an engine, a marked one does.

.ci/run also runs the tests marked docker or compose on a machine view without Docker (.ci/without-docker)
and requires 0 failures; the guard shown here (tests/conftest.py) catches an unmarked test in every run.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from needs import NEEDS, UNMARKED_DOCKER_HOST, lane

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


ROOT = Path(__file__).resolve().parents[1]


def test_make_test_runs_the_test_host_suites_in_a_lane_of_their_own(request, tmp_path):
    """make test's workers (needs.lane): the *_testhost.py files on one, every other test on the other. The lane
    comes from the file name, so a testhost test elsewhere would run beside the test hosts, and a fast test in a
    *_testhost.py file would wait for them: this session's tests (all of them under make test) are checked."""
    misplaced = [item.nodeid for item in request.session.items
                 if (lane(item.nodeid) != "host") != bool(item.get_closest_marker("testhost"))]
    assert not misplaced, "a testhost test outside a *_testhost.py file, or the reverse"
    recipe = re.search(r"^test:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    args = shlex.split(recipe)[shlex.split(recipe).index("pytest") + 1:]
    suites = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*_testhost.py"))
    assert args[args.index("-n") + 1] == "2", f"{recipe}: a worker per lane, the test hosts and the rest"
    # Each worker writes the tests it ran (a plugin for this run); --setup-plan runs no fixture: no host boots.
    (tmp_path / "whereran.py").write_text(
        "import os\n"
        "def pytest_runtest_logreport(report):\n"
        "    if report.when == 'setup' and 'PYTEST_XDIST_WORKER' in os.environ:\n"
        f"        with open({str(tmp_path)!r} + '/ran-' + os.environ['PYTEST_XDIST_WORKER'], 'a') as f:\n"
        "            f.write(report.nodeid + '\\n')\n")
    files = ["tests/test_settings.py", *suites, "tests/ansible/test_portprobe.py"]
    # No CI (a missing tool skips, the lane shows all the same), and none of this worker's own xdist variables.
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-m", "pytest", *args, "-p", "whereran", "-p", "no:cacheprovider",
                          "--setup-plan", *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lanes: dict[str, set[str]] = {}
    for ran in tmp_path.glob("ran-*"):
        for nodeid in ran.read_text().split():
            lanes.setdefault(lane(nodeid), set()).add(ran.name)
    assert set(lanes) == {"host", "testhost"}, run.stdout + run.stderr
    workers = [w for ws in lanes.values() for w in ws]
    assert len(workers) == len(set(workers)) == len(lanes), f"a lane on more than one worker, or shared: {lanes}"
