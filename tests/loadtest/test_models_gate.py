"""The descriptor-driven Locust file (loadtests/models.py) against real tritonservers: `make loadtest
MODEL=tally_kit REPO=...` gates a server that serves only a model no project file mentions (INT32 and
BYTES inputs) with the model's own `slo`, and fails when the descriptor expects a wrong output; the
shipped linear model passes through the same file. Short runs, 2 users; the descriptor's p99 bound is
loose (a busy 2-core box), the answers are what must be right."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from repos import BYOM_MODEL, HAND_WRITTEN, build_byom_repository

from tritonops import settings
from tritonops.models import descriptor
from tritonops.serving import loadgate

# The test's own slo: read from the descriptor (the report shows it), loose so a busy box passes.
SLO = {"p99_ms": 60000, "max_error_rate": 0}


@pytest.fixture(scope="module")
def byom(tmp_path_factory):
    from conftest import serve

    folder = tmp_path_factory.mktemp("byom-locust")
    repo = build_byom_repository(folder, {**HAND_WRITTEN, "slo": SLO})
    server = serve(repo, folder / "server.log")
    yield repo, server
    server.stop()


def make_loadtest(server, repo: Path, report_dir: Path, *extra: str) -> tuple[int, str]:
    args = f"--report-dir {report_dir} --metrics-url {server.metrics_url} " + " ".join(extra)
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "loadtest", f"URL={server.http_url}",
         f"MODEL={BYOM_MODEL}", f"REPO={repo}", "USERS=2", "DURATION=3s", "TARGET=", f"LOADTEST_ARGS={args}"],
        cwd=settings.ROOT, capture_output=True, text=True, timeout=180)
    return done.returncode, done.stdout + done.stderr


def rows(summary: Path) -> dict[str, list[str]]:
    table = [[c.strip() for c in line.strip().strip("|").split("|")] for line in summary.read_text().splitlines()
             if line.startswith("|")]
    found = {}
    for r in table:  # the checks' table first: "p99 latency" is a row of the figures' table too
        found.setdefault(r[0], r[1:])
    return found


def test_gate_passes_on_a_server_with_only_an_unknown_model(byom, tmp_path):
    repo, server = byom
    code, out = make_loadtest(server, repo, tmp_path)
    assert code == 0, out
    assert "loadtests/models.py" in out and f"--model {BYOM_MODEL}" in out
    got = rows(tmp_path / "summary.md")
    assert got["p99 latency"][1] == f"<= {SLO['p99_ms']} ms", got  # the descriptor's slo, not a table's
    assert got["failed requests (client)"][0] == "0 (0.00%)"
    sent = int(got["requests sent"][0])
    assert int(got["server: successful requests"][0]) >= sent > 0
    result = json.loads((tmp_path / "locust.figures.json").read_text())
    assert result["failures"] == 0 and result["requests"] == sent


def test_a_wrong_expected_output_fails_the_gate(byom, tmp_path):
    """Binary tensors here (the pass case is JSON): every answer differs from the descriptor in one value."""
    repo, server = byom
    wrong = tmp_path / "wrong"
    shutil.copytree(repo, wrong)
    doc = copy.deepcopy({**HAND_WRITTEN, "slo": SLO})
    doc["samples"][0]["outputs"]["total"]["data"] = [7]
    (wrong / BYOM_MODEL / descriptor.FILENAME).write_text(json.dumps(doc))
    code, out = make_loadtest(server, wrong, tmp_path / "report", "--binary")
    assert code != 0 and "Error 1" in out, out  # the gate's exit code 1, as make reports it
    result = json.loads((tmp_path / "report" / "locust.figures.json").read_text())
    assert result["failures"] == result["requests"] > 0, result
    assert f"wrong answer: {BYOM_MODEL}: output 'total' differs" in result["errors"][0][1], result["errors"]
    assert "FAIL" in out and "requests failed" in out


def test_models_file_loads_linear_of_the_shipped_repository(shipped_server, tmp_path):
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(loadgate.MODELS_FILE), "--model", "linear", "--headless",
         "-u", "2", "-r", "2", "-t", "3s", "-H", f"http://{shipped_server.http_url}", "--only-summary",
         "--metrics-url", shipped_server.metrics_url, "--slo", "descriptor", "--figures-file", str(figures)],
        cwd=settings.ROOT, capture_output=True, text=True, timeout=180)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "linear [json]" in out and "target `descriptor (linear)`" in out and "\nPASS\n" in out, out
    result = json.loads(figures.read_text())
    assert result["requests"] > 0 and result["failures"] == 0
