"""Model repositories for tests, importable by name from every suite."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tritonops import settings
from tritonops.models import descriptor, linear


def linear_only(dest: Path) -> Path:
    """A model repository at dest holding only the shipped linear model (a symlink to it): for tests
    about the server, the gateway or the gate rather than the models, so that each of their servers
    does not also load the embed pipeline (three more Python stubs, ~10 s on the 2-core box)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / linear.MODEL).symlink_to(settings.MODEL_REPOSITORY / linear.MODEL)
    return dest


BYOM_MODEL = "tally_kit"
BYOM_CONFIG = """
name: "tally_kit"
backend: "python"
max_batch_size: 8
input [
  { name: "numbers" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "words" data_type: TYPE_STRING dims: [ -1 ] }
]
output [
  { name: "total" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "lengths" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "half" data_type: TYPE_FP32 dims: [ 1 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            numbers = pb_utils.get_input_tensor_by_name(request, "numbers").as_numpy()
            words = pb_utils.get_input_tensor_by_name(request, "words").as_numpy()
            total = numbers.astype(np.int64).sum(axis=1, keepdims=True)
            lengths = np.array([[len(w) for w in row] for row in words], dtype=np.int32)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("total", total), pb_utils.Tensor("lengths", lengths),
                pb_utils.Tensor("half", (total / 2).astype(np.float32))]))
        return responses
"""
# Written by hand, present before the server starts: Triton must ignore the file.
HAND_WRITTEN = {
    "samples": [{
        "inputs": {"numbers": {"datatype": "INT32", "shape": [1, 3], "data": [1, 2, 3]},
                   "words": {"datatype": "BYTES", "shape": [1, 3], "data": ["a", "bb", "ccc"]}},
        "outputs": {"total": {"datatype": "INT64", "shape": [1, 1], "data": [6]},
                    "lengths": {"datatype": "INT32", "shape": [1, 3], "data": [1, 2, 3]},
                    "half": {"datatype": "FP32", "shape": [1, 1], "data": [3.0]}},
    }],
}


def build_byom_repository(root: Path, document: dict | None = None) -> Path:
    """A repository at root/byom_repository holding only tally_kit, a model no project file mentions (INT32 and
    BYTES in, INT64/INT32/FP32 out), with its descriptor: HAND_WRITTEN, or document."""
    repo = root / "byom_repository"
    (repo / BYOM_MODEL / "1").mkdir(parents=True)
    (repo / BYOM_MODEL / "config.pbtxt").write_text(BYOM_CONFIG)
    (repo / BYOM_MODEL / "1" / "model.py").write_text(textwrap.dedent(MODEL_PY))
    (repo / BYOM_MODEL / descriptor.FILENAME).write_text(json.dumps(document or HAND_WRITTEN, indent=2))
    return repo
