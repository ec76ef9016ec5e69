"""The canary's answer checks (tritonops/serving/prober.py) against real tritonservers serving tally_kit, a
model no project file mentions (INT32 and BYTES in): a canary serving the same model matches the baseline
on every check; one whose `half` output is computed wrongly mismatches on every check and is aborted by
`canary.decide` on its answers alone; a canary that does not answer mismatches too; a baseline that does
not answer is an error, not a verdict."""
from __future__ import annotations

import contextlib
import json
import subprocess

import pytest

from tritonops import settings
from tritonops.serving import canary, prober
from tritonops.serving.server import LocalServer, free_port

from repos import BYOM_MODEL, build_byom_repository

ROUNDS = 3


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """{name: http address} for baseline (the model), same (a second copy), wrong (half = total / 3)."""
    root = tmp_path_factory.mktemp("prober")
    good = build_byom_repository(root / "good")
    wrong = build_byom_repository(root / "wrong")
    model_py = wrong / BYOM_MODEL / "1" / "model.py"
    model_py.write_text(model_py.read_text().replace("(total / 2)", "(total / 3)"))
    assert "(total / 3)" in model_py.read_text()
    with contextlib.ExitStack() as stack:
        started = {}
        for name, repo in (("baseline", good), ("same", good), ("wrong", wrong)):
            server = LocalServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                 host="127.0.0.1", log_path=root / f"{name}.log")
            stack.callback(server.stop)
            started[name] = server.start().http_url
        yield good, started


def samples(repo) -> int:
    return len(json.loads((repo / BYOM_MODEL / "tritonops.json").read_text())["samples"])


def test_a_canary_serving_the_same_model_matches_every_check(servers):
    repo, urls = servers
    result = prober.probe(urls["same"], [urls["baseline"]], repo, rounds=ROUNDS)
    assert result.checks == ROUNDS * samples(repo) and result.mismatches == 0, result


def test_wrong_answers_mismatch_every_check_and_abort_the_canary(servers):
    repo, urls = servers
    result = prober.probe(urls["wrong"], [urls["baseline"], urls["same"]], repo, rounds=ROUNDS)
    assert result.checks == 2 * ROUNDS * samples(repo), result
    assert result.mismatches == result.checks, result
    assert all("output 'half'" in p and "got 2.0, expected 3.0" in p for p in result.problems), result.problems
    # Figures that pass every other check: the answers alone decide.
    healthy = canary.ServerFigures("gpu2", requests=500, errors=0, mean_response_ms=4.0)
    decision = canary.decide(canary.with_answers(healthy, result.checks, result.mismatches),
                             [canary.ServerFigures("gpu1", 500, 0, 4.0)], canary.Thresholds.from_settings())
    assert decision.verdict == "abort" and decision.reasons == [
        f"{result.mismatches} of {result.checks} answer checks differ from the baseline "
        f"(at most {canary.Thresholds.from_settings().max_answer_mismatches})"], decision.checks


def test_a_canary_that_does_not_answer_mismatches(servers):
    repo, urls = servers
    nobody = f"127.0.0.1:{free_port()}"
    result = prober.probe(nobody, [urls["baseline"]], repo)
    assert result.checks == samples(repo) and result.mismatches == result.checks, result
    assert result.problems[0].startswith(f"canary {nobody}: model {BYOM_MODEL} sample 0: "), result.problems


def test_a_baseline_that_does_not_answer_is_an_error_not_a_verdict(servers):
    repo, urls = servers
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(prober.ProbeError, match=f"baseline {nobody}: model {BYOM_MODEL}"):
        prober.probe(urls["same"], [nobody], repo)


def test_the_command_prints_the_counts_and_exits_1_on_a_mismatch(servers):
    repo, urls = servers
    cli = str(settings.ROOT / ".venv" / "bin" / "tritonops")
    for canary_url, code in ((urls["same"], 0), (urls["wrong"], 1)):
        done = subprocess.run([cli, "probe", "--canary", canary_url, "--baseline", urls["baseline"], "--repository", str(repo)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == code, done.stdout + done.stderr
        printed = json.loads(done.stdout)
        assert printed["checks"] == samples(repo) and printed["mismatches"] == (code and samples(repo)), printed
