"""Identity-like floor: same I/O as linear, numpy only, y = first column of x (see docs/benchmarks.md)."""
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy()[:, :1].copy())]
            )
            for r in requests
        ]
