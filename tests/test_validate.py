"""`make validate`: Triton's own ModelConfig proto, every problem named by file and field."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tritonops import settings, validate


@pytest.fixture
def repo(tmp_path) -> Path:
    """A fresh copy of the repo's model repository to break one thing in."""
    copy = tmp_path / "repo"
    shutil.copytree(settings.MODEL_REPOSITORY, copy)
    return copy


def edit_config(repo: Path, old: str, new: str) -> Path:
    cfg = repo / "linear" / "config.pbtxt"
    text = cfg.read_text()
    assert old in text, f"fixture drift: {old!r} not in config.pbtxt"
    cfg.write_text(text.replace(old, new, 1))
    return cfg


def problems(repo: Path) -> list[str]:
    return [str(p) for p in validate.validate_repository(repo)]


def test_shipped_repository_is_valid():
    assert problems(settings.MODEL_REPOSITORY) == []


def test_cli_exit_codes(repo):
    ok = subprocess.run([sys.executable, "-m", "tritonops.cli", "validate", str(repo)], capture_output=True, text=True)
    assert ok.returncode == 0 and "valid (embed, encoder, linear, tokenizer)" in ok.stdout
    edit_config(repo, "max_batch_size: 64", "max_batch_size: -1")
    bad = subprocess.run([sys.executable, "-m", "tritonops.cli", "validate", str(repo)], capture_output=True, text=True)
    assert bad.returncode == 1 and "max_batch_size: -1 is negative" in bad.stderr


def test_syntax_error_names_line_and_column(repo):
    cfg = edit_config(repo, 'backend: "python"', 'backend: "python" }')
    lineno = cfg.read_text().splitlines().index('backend: "python" }') + 1
    (problem,) = problems(repo)
    assert problem.startswith(f"{cfg}: line {lineno}, column ")


def test_unknown_field_is_a_syntax_error(repo):
    cfg = edit_config(repo, "max_batch_size: 64", "max_batch: 64")
    (problem,) = problems(repo)
    assert problem.startswith(f"{cfg}: line ") and 'no field named "max_batch"' in problem


def test_name_must_match_directory(repo):
    cfg = edit_config(repo, 'name: "linear"', 'name: "linear2"')
    assert problems(repo) == [f"{cfg}: name: 'linear2' does not match the directory name 'linear'"]


def test_numeric_version_directory_required(repo):
    (repo / "linear" / "1").rename(repo / "linear" / "v1")
    assert problems(repo) == [f"{repo / 'linear'}: no numeric version directory (e.g. 1/)"]


def test_python_backend_needs_model_py(repo):
    (repo / "linear" / "1" / "model.py").unlink()
    v1 = repo / "linear" / "1"
    assert problems(repo) == [f"{v1}: backend: python backend needs {v1 / 'model.py'}, which is missing"]


def test_preferred_batch_size_above_max(repo):
    cfg = edit_config(repo, "max_queue_delay_microseconds:", "preferred_batch_size: [ 8, 128 ]\n  max_queue_delay_microseconds:")
    assert problems(repo) == [f"{cfg}: dynamic_batching.preferred_batch_size: 128 is larger than max_batch_size 64"]


def test_dynamic_batching_without_batching(repo):
    cfg = edit_config(repo, "max_batch_size: 64", "max_batch_size: 0")
    assert problems(repo) == [f"{cfg}: dynamic_batching: requires max_batch_size > 0"]


def test_bad_dims_and_dtype(repo):
    cfg = edit_config(repo, "data_type: TYPE_FP32\n    dims: [ 3 ]", "data_type: TYPE_INVALID\n    dims: [ 0 ]")
    assert problems(repo) == [
        f"{cfg}: input[0] (x).data_type: missing or TYPE_INVALID",
        f"{cfg}: input[0] (x).dims: dimension 0 is invalid (use > 0, or -1 for variable)",
    ]


def test_duplicate_output_names(repo):
    cfg = edit_config(repo, "output [\n  {", 'output [\n  { name: "y" data_type: TYPE_FP32 dims: [ 1 ] },\n  {')
    assert problems(repo) == [f"{cfg}: output[1] (y).name: duplicate output name 'y'"]


def test_missing_weights(repo):
    weights = repo / "linear" / "1" / "linear" / "pytorch_model.bin"
    weights.unlink()
    assert problems(repo) == [f"{repo / 'linear' / 'config.pbtxt'}: parameters[weights]: weights file {weights} is missing"]


def test_pickled_module_is_not_loadable_with_weights_only(repo):
    weights = repo / "linear" / "1" / "linear" / "pytorch_model.bin"
    torch.save(torch.nn.Linear(3, 1), weights)  # the seed's pattern: a whole pickled module
    (problem,) = problems(repo)
    assert problem.startswith(f"{weights}: not loadable with torch.load(weights_only=True): UnpicklingError")


def test_every_problem_reported_at_once(repo):
    edit_config(repo, 'name: "linear"', 'name: "other"')
    edit_config(repo, "max_batch_size: 64", "max_batch_size: -2")
    (repo / "linear" / "1" / "model.py").unlink()
    found = problems(repo)
    assert len(found) == 3
    assert any("name: 'other'" in p for p in found)
    assert any("max_batch_size: -2 is negative" in p for p in found)
    assert any("model.py, which is missing" in p for p in found)


ADDER_CONFIG = """
name: "adder"
backend: "python"
max_batch_size: 0
input [
  { name: "a" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "b" data_type: TYPE_INT32 dims: [ -1 ] }
]
output [ { name: "sum" data_type: TYPE_INT32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 2 } ]
"""
ADDER_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "a").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "b").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("sum", (a + b).astype(np.int32))]))
        return out
"""


def test_a_different_valid_model_passes_and_triton_agrees(tmp_path, serve_repository):
    """Not tied to this repo's model: a second model (other dtypes, no batching, 2 inputs) is valid."""
    repo = tmp_path / "other_repo"
    (repo / "adder" / "3").mkdir(parents=True)
    (repo / "adder" / "config.pbtxt").write_text(ADDER_CONFIG)
    (repo / "adder" / "3" / "model.py").write_text(textwrap.dedent(ADDER_MODEL))
    assert problems(repo) == []

    import tritonclient.http as httpclient

    server = serve_repository(repo)
    with httpclient.InferenceServerClient(server.http_url) as client:
        a = httpclient.InferInput("a", [4], "INT32")
        a.set_data_from_numpy(np.arange(4, dtype=np.int32))
        b = httpclient.InferInput("b", [4], "INT32")
        b.set_data_from_numpy(np.full(4, 10, dtype=np.int32))
        result = client.infer("adder", [a, b], model_version="3")
        assert result.as_numpy("sum").tolist() == [10, 11, 12, 13]


def test_missing_repository_and_empty_repository(tmp_path):
    assert problems(tmp_path / "nope") == [f"{tmp_path / 'nope'}: model repository directory does not exist"]
    assert problems(tmp_path) == [f"{tmp_path}: no model directories"]
