"""The seed's model.py, as written (benchmark baseline only; see docs/benchmarks.md)."""
import json
import os

import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        output_config = pb_utils.get_output_config_by_name(self.model_config, "y")
        self.output_dtype = pb_utils.triton_string_to_numpy(output_config["data_type"])
        path = os.path.join(args["model_repository"], args["model_version"], "linear", "pytorch_model.bin")
        # The seed did torch.load(path) of a pickled nn.Module; torch >= 2.6 refuses that by default.
        self.model = torch.nn.Linear(3, 1)
        self.model.load_state_dict(torch.load(path, weights_only=True))
        self.model.eval()

    def execute(self, requests):
        logger = pb_utils.Logger
        responses = []
        for request in requests:
            in_0 = pb_utils.get_input_tensor_by_name(request, "x")
            x = in_0.as_numpy()
            logger.log_info(f"Input tensor x: {x}")
            with torch.no_grad():
                y = self.model(torch.from_numpy(x)).numpy().astype(self.output_dtype)
            logger.log_info(f"Output tensor y: {y}")
            out_tensor = pb_utils.Tensor("y", y)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out_tensor]))
        return responses

    def finalize(self):
        logger = pb_utils.Logger
        logger.log_info("Cleaning up...")
