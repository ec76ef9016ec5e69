"""`tritonops contract`: write a model's descriptor (tritonops.json) from a running server's answers.

Reads the model's config.pbtxt, builds one sample request from it (every input: its name and datatype,
its dims with each -1 replaced by VARIABLE_DIM, a batch dimension of BATCH rows when max_batch_size > 0,
deterministic values), sends it to the server at --url and writes the request with the answer it got
as the expected outputs. Review the file (are the answers right?) before committing it: from then on
`tritonops smoke` holds the server to them. An existing descriptor is kept unless --force.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .. import settings
from . import descriptor, validate

VARIABLE_DIM = 2  # the size a -1 dimension gets in the sample
BATCH = 2  # rows of the sample when the model batches (max_batch_size > 0), at most max_batch_size
FP16_TOLERANCE = 1e-3


class ContractError(RuntimeError):
    pass


def sample_shape(dims, max_batch_size: int) -> list[int]:
    shape = [VARIABLE_DIM if d == -1 else int(d) for d in dims]
    return ([min(BATCH, max_batch_size)] if max_batch_size > 0 else []) + shape


def sample_values(datatype: str, shape: list[int], salt: int = 0) -> np.ndarray:
    """Deterministic values of the datatype: small counting numbers (valid ids, sizes or indices for most
    models), halves for floats, alternating booleans, short distinct strings for BYTES."""
    count = int(np.prod(shape)) if shape else 1
    counting = np.arange(count) + 1 + salt
    if datatype == "BYTES":
        return np.array([f"sample {i}".encode() for i in counting], dtype=object).reshape(shape)
    if datatype == "BOOL":
        return (counting % 2 == 1).reshape(shape)
    from tritonclient.utils import triton_to_np_dtype

    dtype = np.dtype(triton_to_np_dtype(datatype))
    values = counting * 0.5 if dtype.kind == "f" else counting % 100
    return values.astype(dtype).reshape(shape)


def build_sample(config) -> dict[str, np.ndarray]:
    """name -> array for every input of a parsed config.pbtxt (validate.load_config)."""
    return {t.name: sample_values(validate.datatype_name(t.data_type), sample_shape(t.dims, config.max_batch_size), salt=i)
            for i, t in enumerate(config.input)}


def ask(url: str, model: str, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The server's answer to inputs (binary tensors: exact values): name -> array, and name -> datatype."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    try:
        with httpclient.InferenceServerClient(url) as client:
            if not client.is_model_ready(model):
                raise ContractError(f"model {model} is not ready on {url}")
            meta = client.get_model_metadata(model)
            datatypes = {t["name"]: t["datatype"] for t in meta.get("outputs", [])}
            request = []
            for name, array in inputs.items():
                inp = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                inp.set_data_from_numpy(array, binary_data=True)
                request.append(inp)
            outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in datatypes]
            result = client.infer(model, request, outputs=outputs)
    except InferenceServerException as exc:
        raise ContractError(f"{url}: model {model}: {exc}") from None
    except (ConnectionError, OSError) as exc:
        raise ContractError(f"cannot reach the server at {url}: {exc}") from None
    return {n: result.as_numpy(n) for n in datatypes}, datatypes


def _tensor(array: np.ndarray, datatype: str, tolerance: bool) -> dict:
    t = {"datatype": datatype, "shape": list(array.shape), "data": descriptor.values(array)}
    if tolerance and datatype in ("FP16", "FP32", "FP64"):
        tol = FP16_TOLERANCE if datatype == "FP16" else descriptor.DEFAULT_RTOL
        t["rtol"], t["atol"] = tol, tol
    return t


def document(model: str, url: str, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
             datatypes: dict[str, str], input_types: dict[str, str]) -> dict:
    return {
        "description": f"{model}: a sample written by `tritonops contract` from the answers of {url}; "
                       "review the expected outputs before committing",
        "samples": [{
            "inputs": {n: _tensor(a, input_types[n], tolerance=False) for n, a in inputs.items()},
            "outputs": {n: _tensor(a, datatypes[n], tolerance=True) for n, a in outputs.items()},
        }],
        "health_check": True,
    }


def write(repository: Path, model: str, url: str, force: bool = False) -> Path:
    """Write repository/model/tritonops.json from url's answers; its path. ContractError says why not."""
    model_dir = Path(repository) / model
    cfg_path = model_dir / "config.pbtxt"
    if not cfg_path.is_file():
        raise ContractError(f"{cfg_path}: no such file (is {model} a model of {repository}?)")
    target = model_dir / descriptor.FILENAME
    if target.exists() and not force:
        raise ContractError(f"{target} exists: review it, or overwrite it with --force (make contract ... FORCE=1)")
    config, problems = validate.load_config(cfg_path)
    if config is None:
        raise ContractError("; ".join(map(str, problems)))
    inputs = build_sample(config)
    input_types = {t.name: validate.datatype_name(t.data_type) for t in config.input}
    outputs, datatypes = ask(url, model, inputs)
    doc = document(model, url, inputs, outputs, datatypes, input_types)
    descriptor.parse(target, doc)  # what is written must load
    target.write_text(descriptor.dump(doc))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops contract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory name in the repository")
    parser.add_argument("--repository", type=Path, default=settings.MODEL_REPOSITORY, help="model repository (default: the repo's)")
    parser.add_argument("--url", default=f"localhost:{settings.port('http')}", help="HTTP host:port of a server serving it")
    parser.add_argument("--force", action="store_true", help="overwrite an existing tritonops.json")
    args = parser.parse_args(argv)
    try:
        path = write(args.repository, args.model, args.url, args.force)
    except (ContractError, descriptor.DescriptorError) as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}:\n{path.read_text()}")
    print(f"review the expected outputs, then `make validate REPO={args.repository}` and commit {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
