"""Triton Python backend for nn.Linear(3, 1).

All requests of one execute() call run as one forward pass: their inputs are concatenated, run
once and split back. A request that cannot be used gets its own error response; the rest of the
batch is still answered.

Tensors cross the backend boundary by DLPack, not numpy: no copies, GPU outputs stay on the GPU,
and it does not depend on the numpy ABI the backend stub was built against (a stub built for
numpy 1.x misreads numpy 2 arrays: "output tensor shape does not match size of output").
"""
import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from torch import nn
from torch.utils.dlpack import from_dlpack, to_dlpack

IN_FEATURES = 3
OUT_FEATURES = 1


class TritonPythonModel:
    def initialize(self, args):
        self.logger = pb_utils.Logger
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        output = config["output"][0]
        self.output_name = output["name"]
        # Output dtype comes from the config, not from torch.
        np_dtype = pb_utils.triton_string_to_numpy(output["data_type"])
        self.output_dtype = torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype

        use_gpu = args["model_instance_kind"] == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if use_gpu else "cpu")

        weights = config.get("parameters", {}).get("weights", {}).get("string_value", "linear/pytorch_model.bin")
        path = os.path.join(args["model_repository"], args["model_version"], weights)
        # weights_only=True: a state_dict of tensors, never an unpickled module.
        state_dict = torch.load(path, map_location=self.device, weights_only=True)
        self.model = nn.Linear(IN_FEATURES, OUT_FEATURES).to(self.device)
        self.model.load_state_dict(state_dict)
        self.model.eval()
        # One stub process per instance; a [batch, 3] x [3, 1] product never gains from intra-op
        # threads, and their spinning took CPU from the server (make bench on 2 cores, c=16:
        # 7.0k -> 8.8k infer/s). No per-request log line either (a log_verbose per request cost
        # 5.8k -> 7.0k), and one NaN check per batch: 5.4k -> 9.2-10.5k infer/s in all.
        torch.set_num_threads(1)
        self.logger.log_info(f"linear: loaded {path} on {self.device}")

    def _input(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
        if tensor is None:
            raise ValueError(f"missing input '{self.input_name}'")
        x = from_dlpack(tensor.to_dlpack())
        if x.dtype != torch.float32 or x.dim() != 2 or x.shape[1] != IN_FEATURES or x.shape[0] == 0:
            raise ValueError(
                f"input '{self.input_name}' must be FP32 [batch>=1, {IN_FEATURES}], got {x.dtype} {list(x.shape)}"
            )
        return x

    def _error(self, message):
        # INVALID_ARG: the client's fault, so HTTP answers 400 rather than 500.
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))

    def execute(self, requests):
        responses = [None] * len(requests)
        good, inputs = [], []
        for i, request in enumerate(requests):
            try:
                inputs.append(self._input(request))
                good.append(i)
            except ValueError as exc:
                responses[i] = self._error(str(exc))
        if not inputs:
            return responses

        with torch.inference_mode():
            batch = torch.cat(inputs)
            # NaN/Inf would silently come back as NaN: refuse them, for the offending requests only.
            # One check for the whole batch; per request only when it finds something.
            if not torch.isfinite(batch).all():
                finite = [bool(torch.isfinite(x).all()) for x in inputs]
                for i, ok in zip(good, finite):
                    if not ok:
                        responses[i] = self._error(f"input '{self.input_name}' contains NaN or Inf")
                good = [i for i, ok in zip(good, finite) if ok]
                inputs = [x for x, ok in zip(inputs, finite) if ok]
                if not inputs:
                    return responses
                batch = torch.cat(inputs)
            out = self.model(batch.to(self.device, non_blocking=True)).to(self.output_dtype)
            for i, part in zip(good, torch.split(out, [x.shape[0] for x in inputs])):
                tensor = pb_utils.Tensor.from_dlpack(self.output_name, to_dlpack(part.contiguous()))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
        return responses

    def finalize(self):
        self.logger.log_info("linear: finalize")
