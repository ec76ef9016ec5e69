"""`make validate`: Triton's own ModelConfig proto, every problem named by file and field."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tritonops import settings
from tritonops.models import descriptor, fetch, validate
from tritonops.serving import smoke


@pytest.fixture
def repo(tmp_path) -> Path:
    """A fresh copy of the repo's model repository to break one thing in."""
    copy = tmp_path / "repo"
    shutil.copytree(settings.MODEL_REPOSITORY, copy)
    return copy


def edit_config(repo: Path, old: str, new: str, model: str = "linear") -> Path:
    cfg = repo / model / "config.pbtxt"
    text = cfg.read_text()
    assert old in text, f"fixture drift: {old!r} not in config.pbtxt"
    cfg.write_text(text.replace(old, new, 1))
    return cfg


def problems(repo: Path) -> list[str]:
    return [str(p) for p in validate.validate_repository(repo)]


def test_shipped_repository_is_valid():
    assert problems(settings.MODEL_REPOSITORY) == []


@pytest.mark.parametrize("value", ["0", "two", "", "-1"])
def test_intra_op_threads_must_be_a_positive_integer(repo, value):
    cfg = edit_config(repo, 'key: "intra_op_threads"\n  value: { string_value: "1" }',
                      f'key: "intra_op_threads"\n  value: {{ string_value: "{value}" }}', model="encoder")
    assert problems(repo) == [f"{cfg}: parameters[intra_op_threads]: {value!r} is not an integer >= 1"]


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


# --- files git does not carry: each version directory's SHA256SUMS -------------------------------------


def test_missing_model_file_is_named(repo):
    vocab = repo / "tokenizer" / "1" / "minilm" / "vocab.txt"
    vocab.unlink()
    manifest = repo / "tokenizer" / "1" / "SHA256SUMS"
    assert problems(repo) == [f"{vocab}: missing: {manifest} lists it (run `make models`)"]


def test_corrupted_model_file_is_named(repo):
    """Same size, one byte flipped in the middle of the weights: only the hash can tell."""
    weights = repo / "encoder" / "1" / "minilm" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    manifest = repo / "encoder" / "1" / "SHA256SUMS"
    (problem,) = problems(repo)
    assert problem.startswith(f"{weights}: sha256 is ")
    assert problem.endswith(f", not {fetch.read_manifest(manifest)[1].sha256} as {manifest} says (run `make models`)")


def test_bad_manifest_lines_are_named_by_line_and_the_rest_still_checked(repo):
    manifest = repo / "tokenizer" / "1" / "SHA256SUMS"
    lines = manifest.read_text().splitlines()
    lines[1] = "not-a-hash  minilm/tokenizer_config.json"
    lines.append(f"{'0' * 64}  ../../linear/config.pbtxt")
    manifest.write_text("\n".join(lines) + "\n")
    (repo / "tokenizer" / "1" / "minilm" / "vocab.txt").unlink()
    assert problems(repo) == [
        f"{manifest}: line 2: expected '<sha256>  <folder>/<file>', got 'not-a-hash  minilm/tokenizer_config.json'",
        f"{manifest}: line 5: expected '<sha256>  <folder>/<file>', got '{'0' * 64}  ../../linear/config.pbtxt'",
        f"{repo / 'tokenizer' / '1' / 'minilm' / 'vocab.txt'}: missing: {manifest} lists it (run `make models`)",
    ]


def test_validate_model_alone_checks_its_manifest(repo):
    (repo / "encoder" / "1" / "minilm" / "config.json").unlink()
    (problem,) = validate.validate_model(repo / "encoder")
    assert str(problem).startswith(f"{repo / 'encoder' / '1' / 'minilm' / 'config.json'}: missing: ")


# --- ensembles: each step against the models beside it -------------------------------------------------

STEP1 = "ensemble_scheduling.step[1]"
# (id, old, new, the problems: (field, message) in embed/config.pbtxt). Each was seen refused by
# Triton 2.51 at load time, on a small ensemble of the same shape.
ENSEMBLE_CASES = [
    ("step-model-missing", 'model_name: "encoder"', 'model_name: "encodr"',
     [(f"{STEP1}.model_name", "'encodr' is not a model in {repo}")]),
    ("input-map-key-not-an-input", 'input_map { key: "input_ids"', 'input_map { key: "token_ids"',
     [(f"{STEP1}.input_map[token_ids]", "'token_ids' is not an input of model 'encoder' (its inputs: input_ids, attention_mask)"),
      (f"{STEP1}.input_map", "input 'input_ids' of model 'encoder' is not mapped to any ensemble tensor")]),
    ("output-map-key-not-an-output", 'output_map { key: "embedding"', 'output_map { key: "pooled"',
     [(f"{STEP1}.output_map[pooled]", "'pooled' is not an output of model 'encoder' (its outputs: embedding)")]),
    ("step-input-from-nowhere", 'input_map { key: "attention_mask" value: "attention_mask" }',
     'input_map { key: "attention_mask" value: "mask" }',
     [(f"{STEP1}.input_map[attention_mask]", "ensemble tensor 'mask' is neither an ensemble input nor any step's output"),
      ("ensemble_scheduling.step[0].output_map[attention_mask]", "ensemble tensor 'attention_mask' is written but nothing reads it")]),
    ("ensemble-output-not-written", 'output_map { key: "embedding" value: "embedding" }',
     'output_map { key: "embedding" value: "vector" }',
     [("output[0] (embedding)", "no step writes this ensemble output (output_map)"),
      (f"{STEP1}.output_map[embedding]", "ensemble tensor 'vector' is written but nothing reads it")]),
    ("step-input-waits-on-a-cycle", 'input_map { key: "text" value: "text" }', 'input_map { key: "text" value: "embedding" }',
     [("ensemble_scheduling.step[0].input_map[text]", "ensemble tensor 'embedding' is written by "
       f"{STEP1}.output_map[embedding], a step that can never run (a cycle, or an input nothing writes)"),
      (f"{STEP1}.input_map[attention_mask]", "ensemble tensor 'attention_mask' is written by ensemble_scheduling.step[0]"
       ".output_map[attention_mask], a step that can never run (a cycle, or an input nothing writes)"),
      (f"{STEP1}.input_map[input_ids]", "ensemble tensor 'input_ids' is written by ensemble_scheduling.step[0]"
       ".output_map[input_ids], a step that can never run (a cycle, or an input nothing writes)"),
      ("ensemble_scheduling.step[0].input_map[text]", "ensemble tensor 'embedding' is TYPE_STRING here but TYPE_FP32 "
       f"where written ({STEP1}.output_map[embedding])")]),
    ("data-type-mismatch", "data_type: TYPE_STRING", "data_type: TYPE_FP32",
     [("ensemble_scheduling.step[0].input_map[text]", "ensemble tensor 'text' is TYPE_STRING here but TYPE_FP32 where written (input (text))")]),
]


@pytest.mark.parametrize("old,new,want", [c[1:] for c in ENSEMBLE_CASES], ids=[c[0] for c in ENSEMBLE_CASES])
def test_ensemble_step_problems_name_the_field(repo, old, new, want):
    cfg = edit_config(repo, old, new, model="embed")
    assert sorted(problems(repo)) == sorted(f"{cfg}: {field}: {message.format(repo=repo)}" for field, message in want)
    assert sorted(map(str, validate.validate_ensemble(repo / "embed"))) == sorted(problems(repo))


def test_ensemble_steps_may_be_listed_in_any_order(repo):
    """Triton follows the data, not the list (2.51 loads an ensemble whose steps are reversed)."""
    cfg = repo / "embed" / "config.pbtxt"
    text = cfg.read_text()
    head, steps = text.split("  step [\n", 1)
    first, second = steps.split("    },\n", 1)
    second, tail = second.rsplit("  ]\n", 1)
    cfg.write_text(f"{head}  step [\n{second.rstrip().rstrip('}').rstrip()}\n    }},\n{first}    }}\n  ]\n{tail}")
    assert cfg.read_text().index('model_name: "encoder"') < cfg.read_text().index('model_name: "tokenizer"')
    assert problems(repo) == []


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
# x + x = y, then y + y = z, the steps listed in the opposite order.
QUAD_CONFIG = """
name: "quad"
platform: "ensemble"
input [ { name: "x" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "z" data_type: TYPE_INT32 dims: [ -1 ] } ]
ensemble_scheduling { step [
  { model_name: "adder" model_version: -1 input_map { key: "a" value: "y" } input_map { key: "b" value: "y" }
    output_map { key: "sum" value: "z" } },
  { model_name: "adder" model_version: -1 input_map { key: "a" value: "x" } input_map { key: "b" value: "x" }
    output_map { key: "sum" value: "y" } }
] }
"""


def test_a_different_valid_model_passes_and_triton_agrees(tmp_path, serve_repository):
    """Not tied to this repo's model: a second model (other dtypes, no batching, 2 inputs) is valid, and
    so is an ensemble over it whose steps are listed out of order."""
    repo = tmp_path / "other_repo"
    (repo / "adder" / "3").mkdir(parents=True)
    (repo / "adder" / "config.pbtxt").write_text(ADDER_CONFIG)
    (repo / "adder" / "3" / "model.py").write_text(textwrap.dedent(ADDER_MODEL))
    (repo / "quad" / "1").mkdir(parents=True)
    (repo / "quad" / "config.pbtxt").write_text(QUAD_CONFIG)
    assert problems(repo) == [f"{repo / m / descriptor.FILENAME}: missing: every model needs a descriptor "
                              f"(`make contract MODEL={m}` writes one from a running server; a step reached only "
                              'through an ensemble: {"ensemble_step_of": "<ensemble>"})' for m in ("adder", "quad")]
    int32 = lambda shape, data: {"datatype": "INT32", "shape": shape, "data": data}  # noqa: E731
    (repo / "adder" / descriptor.FILENAME).write_text(json.dumps({"samples": [
        {"inputs": {"a": int32([2], [1, 2]), "b": int32([2], [10, 20])}, "outputs": {"sum": int32([2], [11, 22])}}]}))
    (repo / "quad" / descriptor.FILENAME).write_text(json.dumps({"samples": [
        {"inputs": {"x": int32([3], [1, 2, 5])}, "outputs": {"z": int32([3], [4, 8, 20])}}]}))
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
        x = httpclient.InferInput("x", [3], "INT32")
        x.set_data_from_numpy(np.array([1, 2, 5], dtype=np.int32))
        assert client.infer("quad", [x]).as_numpy("z").tolist() == [4, 8, 20]
    out = io.StringIO()
    smoke.run(server.http_url, server.grpc_url, out=out, repository=repo)  # their descriptors, 3 paths each
    assert out.getvalue().count("ok  ") == 6 and out.getvalue().count("  quad  ") == 3, out.getvalue()


def test_missing_repository_and_empty_repository(tmp_path):
    assert problems(tmp_path / "nope") == [f"{tmp_path / 'nope'}: model repository directory does not exist"]
    assert problems(tmp_path) == [f"{tmp_path}: no model directories"]
