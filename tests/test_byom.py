"""Bring your own model: a repository holding only a model this project knows nothing about (INT32 and
BYTES in, INT64/INT32/FP32 out), described by its own tritonops.json. `tritonops contract` writes the
descriptor from the server's answers, `tritonops validate` checks it against config.pbtxt and
`tritonops smoke --repository` holds the server to it. One real tritonserver (the wheel's) for the module."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tritonops import settings
from tritonops.models import descriptor, validate
from tritonops.serving import smoke
from tritonops.serving.server import LocalServer, free_port

from repos import BYOM_MODEL as MODEL, build_byom_repository as build_repository  # noqa: E402


@pytest.fixture(scope="module")
def byom(tmp_path_factory):
    root = tmp_path_factory.mktemp("byom")
    repo = build_repository(root)
    server = LocalServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         host="127.0.0.1", log_path=root / "server.log").start()
    yield repo, server
    server.stop()


def tritonops(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(settings.ROOT)}
    return subprocess.run([sys.executable, "-m", "tritonops.cli", *args], cwd=settings.ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_triton_ignores_the_descriptor_in_the_model_directory(byom):
    repo, server = byom
    assert (repo / MODEL / descriptor.FILENAME).is_file()
    with httpclient.InferenceServerClient(server.http_url) as client:
        assert client.is_model_ready(MODEL)
        numbers = httpclient.InferInput("numbers", [1, 2], "INT32")
        numbers.set_data_from_numpy(np.array([[40, 2]], dtype=np.int32))
        words = httpclient.InferInput("words", [1, 2], "BYTES")
        words.set_data_from_numpy(np.array([[b"four", b"xy"]], dtype=object))
        result = client.infer(MODEL, [numbers, words])
        assert result.as_numpy("total").tolist() == [[42]]
        assert result.as_numpy("lengths").tolist() == [[4, 2]]


def test_hand_written_descriptor_validates_and_smokes(byom):
    repo, server = byom
    assert validate.validate_repository(repo) == []
    done = tritonops("smoke", "--url", server.http_url, "--grpc-url", server.grpc_url, "--repository", str(repo))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok  ") == 3 and done.stdout.count(f"  {MODEL}  ") == 3, done.stdout


def test_contract_writes_the_descriptor_from_the_answers_and_refuses_to_overwrite(byom, tmp_path):
    repo, server = byom
    target = repo / MODEL / descriptor.FILENAME
    before = target.read_text()
    refused = tritonops("contract", "--model", MODEL, "--repository", str(repo), "--url", server.http_url)
    assert refused.returncode == 1 and f"{target} exists" in refused.stderr and "--force" in refused.stderr, refused.stderr
    assert target.read_text() == before

    done = tritonops("contract", "--model", MODEL, "--repository", str(repo), "--url", server.http_url, "--force")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wrote {target}" in done.stdout
    (sample,) = json.loads(target.read_text())["samples"]
    # max_batch_size 8 -> a batch of 2 rows; dims [-1] -> 2; counting values, distinct strings
    assert sample["inputs"] == {
        "numbers": {"datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]},
        "words": {"datatype": "BYTES", "shape": [2, 2], "data": ["sample 2", "sample 3", "sample 4", "sample 5"]},
    }
    assert sample["outputs"]["total"] == {"datatype": "INT64", "shape": [2, 1], "data": [3, 7]}
    assert sample["outputs"]["lengths"] == {"datatype": "INT32", "shape": [2, 2], "data": [8, 8, 8, 8]}
    assert sample["outputs"]["half"] == {"datatype": "FP32", "shape": [2, 1], "data": [1.5, 3.5],
                                         "rtol": descriptor.DEFAULT_RTOL, "atol": descriptor.DEFAULT_ATOL}
    assert validate.validate_repository(repo) == []

    done = tritonops("smoke", "--url", server.http_url, "--grpc-url", server.grpc_url, "--repository", str(repo))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok  ") == 3 and "smoke: all checks passed" in done.stdout, done.stdout

    # A wrong expected answer fails the smoke, naming the model and the tensor.
    wrong = tmp_path / "wrong"
    shutil.copytree(repo, wrong)
    doc = json.loads((wrong / MODEL / descriptor.FILENAME).read_text())
    doc["samples"][0]["outputs"]["total"]["data"] = [3, 8]
    (wrong / MODEL / descriptor.FILENAME).write_text(json.dumps(doc))
    with pytest.raises(smoke.SmokeFailure, match=rf"HTTP JSON .*: model {MODEL} sample 0: output 'total' value 1: got 7, expected 8"):
        smoke.run(server.http_url, server.grpc_url, repository=wrong)
    done = tritonops("smoke", "--url", server.http_url, "--grpc-url", server.grpc_url, "--repository", str(wrong))
    assert done.returncode == 1 and f"model {MODEL}" in done.stderr and "output 'total'" in done.stderr, done.stderr


def test_smoke_names_a_model_the_server_lacks(byom):
    """The user's situation before descriptors, turned round: the shipped repository against a server
    that serves only the user's model fails clearly, naming the model."""
    _, server = byom
    with pytest.raises(smoke.SmokeFailure, match="model embed not ready"):
        smoke.run(server.http_url, server.grpc_url)


def edited(tmp_path: Path, edit) -> tuple[Path, Path]:
    repo = build_repository(tmp_path)
    path = repo / MODEL / descriptor.FILENAME
    doc = json.loads(path.read_text())
    edit(doc["samples"][0])
    path.write_text(json.dumps(doc))
    return repo, path


def rename_input(sample):
    sample["inputs"]["nums"] = sample["inputs"].pop("numbers")


def retype_input(sample):
    sample["inputs"]["numbers"]["datatype"] = "INT64"


def unbatch_input(sample):
    sample["inputs"]["numbers"]["shape"] = [3]


def reshape_output(sample):
    sample["outputs"]["total"]["shape"] = [1, 2]
    sample["outputs"]["total"]["data"] = [6, 6]


@pytest.mark.parametrize("edit,want", [
    (rename_input, ["samples[0].inputs.nums: 'nums' is not an input of tally_kit (config.pbtxt: numbers, words)",
                    "samples[0].inputs: required input 'numbers' is missing"]),
    (retype_input, ["samples[0].inputs.numbers.datatype: INT64, but config.pbtxt declares TYPE_INT32 (INT32)"]),
    (unbatch_input, ["samples[0].inputs.numbers.shape: shape [3] does not match the config's [1..8, any]"]),
    (reshape_output, ["samples[0].outputs.total.shape: shape [1, 2] does not match the config's [1..8, 1]"]),
], ids=["input-name", "input-datatype", "input-shape", "output-shape"])
def test_validate_names_the_descriptor_file_and_field(tmp_path, edit, want):
    repo, path = edited(tmp_path, edit)
    assert [str(p) for p in validate.validate_repository(repo)] == [f"{path}: {w}" for w in want]
    done = tritonops("validate", str(repo))
    assert done.returncode == 1 and f"{path}: {want[0]}" in done.stderr, done.stderr


def test_validate_reports_a_missing_or_malformed_descriptor(tmp_path):
    repo = build_repository(tmp_path)
    path = repo / MODEL / descriptor.FILENAME
    path.unlink()
    (problem,) = map(str, validate.validate_repository(repo))
    assert problem.startswith(f"{path}: missing: every model needs a descriptor (`make contract MODEL={MODEL}`")
    assert validate.validate_repository(repo, descriptors=False) == []  # what a server needs: contract comes after serve
    path.write_text('{"samples": [{"inputs": {"numbers": {"datatype": "INT33", "shape": [1], "data": [1]}}}], "slo": 3}')
    found = [str(p) for p in validate.validate_repository(repo)]
    assert f"{path}: samples[0].inputs.numbers.datatype: 'INT33' is not one of {descriptor.DATATYPES}" in found, found
    assert f"{path}: slo: 3 is not of type 'object'" in found, found
    path.write_text('{"samples": [')
    (problem,) = map(str, validate.validate_repository(repo))
    assert problem.startswith(f"{path}: line 1, column 14: ")
