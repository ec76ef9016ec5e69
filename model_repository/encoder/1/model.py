"""Triton Python backend: all-MiniLM-L6-v2 -> one L2-normalised 384-d embedding per text (embed, step 2).

Requests merged by the dynamic batcher may differ in length (ragged batching): they are padded to the
longest, run as one forward pass, mean-pooled over their attention mask, normalised and split back.
Padding changes nothing: padded positions are masked out of attention and of the mean.
Tensors cross the backend boundary by DLPack, as in linear: no copies, GPU outputs stay on the GPU.

torch and transformers are imported in the methods, not at the top: at every load Triton's Python
backend first imports this file in a stub of its own (to offer auto_complete_config), then again in the
instance's stub. Imported at the top they cost that first stub ~3 s of CPU for nothing, beside the
other models loading on the same cores: the whole repository took 27-31 s to READY with the tokenizer's
and the encoder's imports at the top, 12-23 s with them here (3 loads each, alternated, on the busy
2-core box, load average 3-5; 2026-11-28).
"""
import json
import os

# Never reach for the Hugging Face Hub: the files are local, the hosts may be air-gapped.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # no progress bars in Triton's log

import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        import torch
        from transformers import AutoModel

        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params["files"])
        self.ids_name, self.mask_name = (tensor["name"] for tensor in config["input"])
        self.output_name = config["output"][0]["name"]
        threads = params.get("intra_op_threads", "1")
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"{config['name']}/config.pbtxt: parameter intra_op_threads must be an integer >= 1, got {threads!r}")
        torch.set_num_threads(int(threads))  # why: config.pbtxt
        use_gpu = args["model_instance_kind"] == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if use_gpu else "cpu")
        # safetensors only: a pickled checkpoint is never read, even if one appears beside it.
        self.model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True).to(self.device).eval()
        self.vocab_size = self.model.config.vocab_size
        self.max_positions = self.model.config.max_position_embeddings
        pb_utils.Logger.log_info(f"encoder: loaded {path} on {self.device}, {torch.get_num_threads()} intra-op thread(s)")

    def _inputs(self, request):
        from torch.utils.dlpack import from_dlpack

        ids, mask = (pb_utils.get_input_tensor_by_name(request, name) for name in (self.ids_name, self.mask_name))
        if ids is None or mask is None:
            raise ValueError(f"inputs '{self.ids_name}' and '{self.mask_name}' are both required")
        ids, mask = from_dlpack(ids.to_dlpack()), from_dlpack(mask.to_dlpack())
        if ids.dim() != 2 or ids.shape != mask.shape or ids.shape[0] == 0 or not 0 < ids.shape[1] <= self.max_positions:
            raise ValueError(f"'{self.ids_name}' and '{self.mask_name}' must have one shape [batch>=1, 1..{self.max_positions}], "
                             f"got {list(ids.shape)} and {list(mask.shape)}")
        if int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size:
            raise ValueError(f"'{self.ids_name}' must hold token ids in [0, {self.vocab_size})")
        if not bool(((mask == 0) | (mask == 1)).all()) or not bool(mask.any(dim=1).all()):
            raise ValueError(f"'{self.mask_name}' must be 0/1 with at least one 1 per row")
        return ids, mask

    def execute(self, requests):
        import torch
        from torch.utils.dlpack import to_dlpack

        responses = [None] * len(requests)
        good, inputs = [], []
        for i, request in enumerate(requests):
            try:
                inputs.append(self._inputs(request))
                good.append(i)
            except ValueError as exc:
                # INVALID_ARG: the client's fault, so HTTP answers 400 rather than 500.
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
        if not inputs:
            return responses
        width = max(ids.shape[1] for ids, _ in inputs)
        pad = torch.nn.functional.pad
        ids = torch.cat([pad(ids, (0, width - ids.shape[1])) for ids, _ in inputs]).to(self.device)
        mask = torch.cat([pad(mask, (0, width - mask.shape[1])) for _, mask in inputs]).to(self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            embeddings = torch.nn.functional.normalize(pooled, p=2, dim=1).float()
        for i, part in zip(good, torch.split(embeddings, [ids.shape[0] for ids, _ in inputs])):
            tensor = pb_utils.Tensor.from_dlpack(self.output_name, to_dlpack(part.contiguous()))
            responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
        return responses
