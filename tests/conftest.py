"""Fixtures shared by the suites: a real tritonserver (the wheel's) on free ports."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tritonops import settings
from tritonops.models import linear
from tritonops.serving.server import LocalServer, free_port

from needs import DOCKER_MARKERS, NEEDS, UNMARKED_DOCKER_HOST, lane, require
from repos import linear_only  # noqa: F401  (a helper for the suites; importable from here too)

NEED_TAG = re.compile(r"\[needs (\w+)\] (.*)", re.S)


def pytest_configure(config):
    for need in NEEDS.values():
        config.addinivalue_line("markers", f"{need.marker}: needs {need.what} (skips without it; fails under CI=true)")


def pytest_collection_modifyitems(items):
    """A test that needs an engine or a test host gets that need's time limit (session fixtures boot inside it)."""
    for item in items:
        limits = [NEEDS[m].timeout_s for m in NEEDS if item.get_closest_marker(m)]
        if limits and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(max(limits)))


def pytest_xdist_make_scheduler(config, log):
    """make test's lanes (needs.lane): a work unit per lane, so one worker runs each."""
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return lane(nodeid)

    return Lanes(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for marker in NEEDS:
        if item.get_closest_marker(marker):
            require(marker)


@pytest.fixture(autouse=True)
def _docker_only_where_marked(request, monkeypatch):
    """An unmarked test finds no compose and no engine, as on a newcomer's machine: one that reaches for
    them fails here, in every run, instead of only where Docker is missing."""
    if any(request.node.get_closest_marker(m) for m in DOCKER_MARKERS):
        return
    from tritonops.stack import compose

    def refuse():
        raise compose.ComposeError(f"{request.node.nodeid} reached for compose unmarked: mark it compose or docker")

    monkeypatch.setattr(compose, "compose_command", refuse)
    monkeypatch.setenv("DOCKER_HOST", UNMARKED_DOCKER_HOST)


SUITE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """Seconds per suite (tests/<folder>, or tests/ for the top-level files): setup, call and teardown."""
    folders = report.nodeid.split("::")[0].split("/")[:-1]
    suite = "/".join(folders[:2]) or "."
    SUITE_SECONDS[suite] = SUITE_SECONDS.get(suite, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """Seconds per suite (the development docs' table), then the skips grouped by what they need, each
    with the command that enables it: what to run next."""
    if SUITE_SECONDS:
        terminalreporter.write_sep("=", "seconds per suite (setup + call + teardown)")
        for suite, secs in sorted(SUITE_SECONDS.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{secs:8.0f}  {suite}")
    groups: dict[str, list[str]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        tagged = NEED_TAG.match(reason.removeprefix("Skipped: "))
        marker, why = (tagged.group(1), tagged.group(2)) if tagged else ("other", reason.removeprefix("Skipped: "))
        groups.setdefault(marker, []).append(why)
    if not groups:
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", f"left out: {sum(map(len, groups.values()))} skipped, by what they need")
    for marker, reasons in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        need = NEEDS.get(marker)
        if need is None:
            write(f"{len(reasons):4} other: " + "; ".join(f"{why} (x{reasons.count(why)})" for why in dict.fromkeys(reasons)))
            continue
        write(f"{len(reasons):4} need {need.what}: {max(set(reasons), key=reasons.count)}")
        write(f"       enable: {need.enable}  (takes {need.cost})")

def start_server(repository: Path, log_path: Path, **kwargs) -> LocalServer:
    server = LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         host="127.0.0.1", log_path=log_path, **kwargs)
    return server.start()


@pytest.fixture
def serve_repository(tmp_path):
    """Factory: serve another model repository on free ports; stopped when the test ends."""
    servers = []

    def serve(repository: Path, **kwargs) -> LocalServer:
        servers.append(start_server(repository, tmp_path / f"server{len(servers)}.log", **kwargs))
        return servers[-1]

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    """The repo's model_repository served by a real tritonserver for the whole session."""
    log = tmp_path_factory.mktemp("triton") / "server.log"
    server = start_server(settings.MODEL_REPOSITORY, log)
    yield server
    server.stop()


class Http:
    """Raw HTTP to the server: status code and decoded JSON, for tests that send malformed requests."""

    def __init__(self, base: str):
        self.base = f"http://{base}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 10):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post_json(self, path: str, payload, timeout: float = 10) -> tuple[int, dict]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, raw = self.request("POST", path, body, {"Content-Type": "application/json"}, timeout)
        return status, json.loads(raw) if raw else {}

    def get_json(self, path: str) -> tuple[int, dict]:
        status, raw = self.request("GET", path)
        return status, json.loads(raw) if raw else {}


@pytest.fixture(scope="session")
def http(triton) -> Http:
    return Http(triton.http_url)


@pytest.fixture(scope="session")
def max_batch_size(http) -> int:
    status, config = http.get_json(f"/v2/models/{linear.MODEL}/config")
    assert status == 200, config
    return config["max_batch_size"]
