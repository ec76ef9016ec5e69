"""The `embed` model's client contract: names, fixed sentences, the in-process reference, checks.

The reference runs the same files `make models` put in the model repository with transformers in
this process, one text at a time (no padding): the server pads and batches, so agreement also proves
that padding and batching change nothing. Agreement is cosine similarity >= MIN_COSINE per text.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from .. import settings

MODEL = "embed"
VERSION = "1"
INPUT, OUTPUT = "text", "embedding"
DATATYPE = "BYTES"
DIM = 384
TOKENIZER, ENCODER = "tokenizer", "encoder"
MIN_COSINE = 0.9999
MAX_NORM_ERROR = 1e-3  # |norm - 1| of each row: the encoder L2-normalises

# Fixed sentences of different lengths, scripts and punctuation (the accuracy tests, Locust, bench).
SENTENCES = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "Triton serves many models from one repository, each with its own batching and instance settings.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "naïve café, façade, déjà vu 🙂🚀",
    "GPU",
)
# A paraphrase pair must be closer than an unrelated pair.
PARAPHRASE = ("A man is eating food.", "A man is eating a piece of bread.")
UNRELATED = ("A man is eating food.", "The girl is carrying a baby.")


def _parameter(model: str, key: str, repository: Path) -> str:
    """A parameter of a step's config.pbtxt (the one place it is set), parsed into Triton's ModelConfig."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse((repository / model / "config.pbtxt").read_text(), mc.ModelConfig())
    return config.parameters[key].string_value


def _files(model: str, repository: Path) -> Path:
    """The folder of a step's version directory that `make models` fills (its `files` parameter)."""
    return repository / model / VERSION / _parameter(model, "files", repository)


def has_files(repository: Path) -> bool:
    """Whether the repository holds the tokenizer's and encoder's files (`make models` extracted them)."""
    return all(_files(m, repository).is_dir() for m in (TOKENIZER, ENCODER))


def manifests_differ(repository: Path, other: Path) -> list[str]:
    """The steps whose pinned manifest (<step>/<version>/SHA256SUMS) is missing or differs between the two."""
    def text(repo: Path, model: str) -> str | None:
        path = repo / model / VERSION / "SHA256SUMS"
        return path.read_text() if path.is_file() else None

    return [m for m in (TOKENIZER, ENCODER) if text(repository, m) is None or text(repository, m) != text(other, m)]


def max_tokens(repository: Path = settings.MODEL_REPOSITORY) -> int:
    """The tokenizer's truncation length (its `max_tokens` parameter)."""
    return int(_parameter(TOKENIZER, "max_tokens", repository))


@functools.cache
def _loaded(repository: Path):
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()

    tokenizer = AutoTokenizer.from_pretrained(_files(TOKENIZER, repository), local_files_only=True)
    model = AutoModel.from_pretrained(_files(ENCODER, repository), local_files_only=True, use_safetensors=True).eval()
    return tokenizer, model, max_tokens(repository)


def load(repository: Path = settings.MODEL_REPOSITORY):
    """(tokenizer, model, max_tokens) as the reference uses them: the repository's files, loaded once."""
    return _loaded(Path(repository).resolve())


def reference(texts, repository: Path = settings.MODEL_REPOSITORY, max_tokens: int | None = None) -> np.ndarray:
    """[len(texts), DIM] float32: each text tokenized and encoded alone, mean-pooled, L2-normalised.
    max_tokens: truncate there instead of at the tokenizer config's max_tokens (the server's)."""
    import torch

    tokenizer, model, limit = load(repository)
    rows = []
    with torch.inference_mode():
        for text in texts:
            encoded = tokenizer(text, truncation=True, max_length=max_tokens or limit, return_tensors="pt")
            hidden = model(**encoded).last_hidden_state[0]  # [tokens, DIM]: no padding, so a plain mean
            rows.append(torch.nn.functional.normalize(hidden.mean(dim=0), dim=0))
    return torch.stack(rows).numpy().astype(np.float32) if rows else np.zeros((0, DIM), np.float32)


def truncated(text: str, repository: Path = settings.MODEL_REPOSITORY) -> str:
    """The prefix of text that the server embeds: what fits in max_tokens ([CLS] and [SEP] included).
    The rest of a longer text changes nothing; text itself when it fits."""
    tokenizer, _, limit = load(repository)
    if len(tokenizer(text, truncation=True, max_length=limit + 1)["input_ids"]) <= limit:
        return text
    encoded = tokenizer(text, truncation=True, max_length=limit, return_offsets_mapping=True)
    ends = [end for (start, end), special in zip(encoded["offset_mapping"],
                                                 tokenizer.get_special_tokens_mask(encoded["input_ids"], already_has_special_tokens=True))
            if not special]
    return text[:ends[-1]]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [n, DIM] arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def texts_array(texts) -> np.ndarray:
    """The [n, 1] BYTES tensor clients send: UTF-8 (str) or raw bytes as given."""
    return np.array([[t.encode() if isinstance(t, str) else t] for t in texts], dtype=object)


def check_output(texts, got: np.ndarray | None, want: np.ndarray | None = None) -> str | None:
    """None when got holds the right embeddings for texts, else what is wrong; want: the reference if known."""
    if got is None:
        return f"response has no output '{OUTPUT}'"
    if tuple(got.shape) != (len(texts), DIM):
        return f"output '{OUTPUT}' has shape {list(got.shape)}, expected {[len(texts), DIM]}"
    if got.dtype != np.float32:
        return f"output '{OUTPUT}' has dtype {got.dtype}, expected float32"
    sims = cosine(got, reference(texts) if want is None else want)
    worst = int(np.argmin(np.nan_to_num(sims, nan=-2.0)))
    if not sims[worst] >= MIN_COSINE:
        return f"output '{OUTPUT}' row {worst} ({texts[worst]!r:.60}) has cosine {sims[worst]:.6f} to the reference, below {MIN_COSINE}"
    # Cosine is blind to scale: each row must also be the unit vector the config promises (clients
    # compare embeddings by dot product).
    error = np.abs(np.linalg.norm(got.astype(np.float64), axis=1) - 1)
    worst = int(np.argmax(np.nan_to_num(error, nan=np.inf)))
    if not error[worst] <= MAX_NORM_ERROR:
        return (f"output '{OUTPUT}' is not L2-normalised: row {worst} ({texts[worst]!r:.60}) has norm "
                f"{np.linalg.norm(got[worst]):.6f}, expected 1 within {MAX_NORM_ERROR}")
    return None


# --- Locust's request path: requests encoded once, answers checked against references computed once ---
# check_output's verdict and message, from the response bytes and a reference computed at start.


def http_body(texts, binary: bool = False) -> tuple[bytes, dict[str, str]]:
    """Request body and headers for /v2/models/embed/versions/1/infer, built by tritonclient; binary: the
    binary tensor extension for the texts and the embeddings, JSON otherwise."""
    import tritonclient.http as httpclient

    inp = httpclient.InferInput(INPUT, [len(texts), 1], DATATYPE)
    inp.set_data_from_numpy(texts_array(texts), binary_data=binary)
    out = httpclient.InferRequestedOutput(OUTPUT, binary_data=binary)
    body, json_size = httpclient.InferenceServerClient.generate_request_body([inp], outputs=[out])
    if json_size is None:
        return body, {"Content-Type": "application/json"}
    return body, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(json_size)}


def _array(values, shape, datatype: str) -> np.ndarray:
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(datatype)
    if dtype is None:
        raise ValueError(f"output '{OUTPUT}' has an unknown datatype {datatype!r}")
    if isinstance(values, (bytes, memoryview)):
        array = np.frombuffer(values, dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        array = np.asarray(values, dtype=dtype)
    return array.reshape(shape)  # raises when the data does not fill the shape it claims


def check_json_answer(body: bytes, texts, want: np.ndarray) -> str | None:
    """check_output for a KServe v2 JSON response body; raises if it is no such body."""
    import json

    for out in json.loads(body)["outputs"]:
        if out["name"] == OUTPUT:
            return check_output(texts, _array(out["data"], out["shape"], out["datatype"]), want)
    return check_output(texts, None, want)


def check_binary_answer(body: bytes, header_length: int | None, texts, want: np.ndarray) -> str | None:
    """check_output for a response of the binary tensor extension (JSON header, then the tensors' bytes)."""
    import json

    if header_length is None:
        return check_json_answer(body, texts, want)
    offset = header_length
    for out in json.loads(body[:header_length])["outputs"]:
        size = out.get("parameters", {}).get("binary_data_size")
        if out["name"] == OUTPUT:
            if size is None:
                return check_output(texts, _array(out["data"], out["shape"], out["datatype"]), want)
            raw = body[offset:offset + size]
            if len(raw) != size:
                raise ValueError(f"output '{OUTPUT}': {len(raw)} bytes, expected {size}")
            return check_output(texts, _array(raw, out["shape"], out["datatype"]), want)
        offset += size or 0
    return check_output(texts, None, want)
