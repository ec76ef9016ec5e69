"""Triton Python backend: UTF-8 text -> input_ids and attention_mask for the encoder (embed, step 1).

All requests of one execute() call are tokenized in one call of the fast (Rust) tokenizer, padded to
the longest text of the call and truncated to `max_tokens`, then split back per request. A request
whose text is not UTF-8 gets its own 400; the rest of the batch is still answered.

transformers (which imports torch) is imported in initialize(), not at the top: Triton's Python backend
also imports this file in a short-lived stub of its own at every load (see the encoder's model.py).
"""
import json
import os

# Never reach for the Hugging Face Hub: the files are local, the hosts may be air-gapped.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # no progress bars in Triton's log

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        from transformers import AutoTokenizer

        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params["files"])
        self.max_tokens = int(params["max_tokens"])
        self.input_name = config["input"][0]["name"]
        self.output_names = [output["name"] for output in config["output"]]
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        pb_utils.Logger.log_info(f"tokenizer: loaded {path}, max_tokens {self.max_tokens}")

    def _texts(self, request):
        rows = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy().reshape(-1)
        try:
            return [row.decode("utf-8") if isinstance(row, bytes) else str(row) for row in rows]
        except UnicodeDecodeError as exc:
            raise ValueError(f"input '{self.input_name}' must be UTF-8 text: {exc}") from None

    def execute(self, requests):
        responses = [None] * len(requests)
        good, texts = [], []
        for i, request in enumerate(requests):
            try:
                texts.append(self._texts(request))
                good.append(i)
            except ValueError as exc:
                # INVALID_ARG: the client's fault, so HTTP answers 400 rather than 500.
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
        if not texts:
            return responses
        encoded = self.tokenizer([t for part in texts for t in part], padding="longest", truncation=True,
                                 max_length=self.max_tokens, return_tensors="np")
        arrays = [encoded[name].astype(np.int64) for name in self.output_names]
        start = 0
        for i, part in zip(good, texts):
            stop = start + len(part)
            responses[i] = pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, array[start:stop]) for name, array in zip(self.output_names, arrays)])
            start = stop
        return responses
