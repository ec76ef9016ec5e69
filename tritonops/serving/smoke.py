"""Send every model's samples (its tritonops.json) over HTTP (JSON), HTTP (binary tensors) and gRPC and check
every answer: the expected outputs within their tolerances, or the named reference."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .. import settings
from ..models import descriptor, linear


class SmokeFailure(AssertionError):
    pass


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise SmokeFailure(message)


def check_metadata(meta: dict, where: str) -> None:
    """Names, datatypes and shapes of the model metadata (HTTP's dict form)."""
    want_in = {"name": linear.INPUT, "datatype": linear.DATATYPE, "shape": [-1, linear.IN_FEATURES]}
    want_out = {"name": linear.OUTPUT, "datatype": linear.DATATYPE, "shape": [-1, linear.OUT_FEATURES]}
    def summary(tensors):  # gRPC's JSON form spells int64 dims as strings
        return [{"name": t.get("name"), "datatype": t.get("datatype"), "shape": [int(d) for d in t.get("shape", [])]}
                for t in tensors]

    got_in, got_out = summary(meta.get("inputs", [])), summary(meta.get("outputs", []))
    _expect(got_in == [want_in], f"{where}: model inputs {got_in}, expected [{want_in}]")
    _expect(got_out == [want_out], f"{where}: model outputs {got_out}, expected [{want_out}]")


def infer_http(url: str, x: np.ndarray, binary: bool) -> np.ndarray:
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(url) as client:
        inputs, outputs = linear.http_inputs(x, binary)
        return client.infer(linear.MODEL, inputs, model_version=linear.VERSION, outputs=outputs).as_numpy(linear.OUTPUT)


def infer_grpc(url: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        inputs, outputs = linear.grpc_inputs(x)
        return client.infer(linear.MODEL, inputs, model_version=linear.VERSION, outputs=outputs).as_numpy(linear.OUTPUT)


def _summary(outputs: dict[str, np.ndarray], limit: int = 4) -> str:
    """`name = [v0, v1, ...] (n values)` for each output: the first few values of the first sample."""
    parts = []
    for name, y in outputs.items():
        flat = descriptor.values(y)
        text = str(flat[:limit])
        if len(flat) > limit:
            text = f"{text[:-1]}, ...] ({len(flat)} values)"
        parts.append(f"{name} = {text}")
    return "  ".join(parts)


def descriptors_of(repository: Path, models: list[str] | None = None) -> list[descriptor.Descriptor]:
    """The descriptors smoke sends: every model of repository with samples (ensemble steps left out), or
    the models named (each must have samples). SmokeFailure names a missing or broken descriptor."""
    repository = Path(repository)
    if not repository.is_dir():
        raise SmokeFailure(f"model repository {repository} does not exist")
    dirs = {p.name: p for p in sorted(repository.iterdir()) if (p / "config.pbtxt").is_file()}
    for name in models or []:
        if name not in dirs:
            raise SmokeFailure(f"model {name}: not in {repository} (its models: {', '.join(dirs) or 'none'})")
    found = []
    for name, path in dirs.items():
        if models and name not in models:
            continue
        try:
            desc = descriptor.load(path)
        except FileNotFoundError:
            raise SmokeFailure(f"model {name}: no {path / descriptor.FILENAME} (make contract MODEL={name} writes one)") from None
        except descriptor.DescriptorError as exc:
            raise SmokeFailure(f"model {name}: {exc}") from None
        if desc.checked:
            found.append(desc)
        elif models:
            raise SmokeFailure(f"model {name}: {desc.path} has no samples (ensemble step of {desc.ensemble_step_of})")
    if not found:
        raise SmokeFailure(f"{repository}: no model with samples to send (tritonops.json: `samples`)")
    return found


def infer(protocol: str, url: str, desc: descriptor.Descriptor, sample: descriptor.Sample,
           output_names: list[str]) -> dict[str, np.ndarray]:
    if protocol == "grpc":
        import tritonclient.grpc as client_module
    else:
        import tritonclient.http as client_module
    binary = protocol == "http-binary"
    inputs = []
    for t in sample.inputs:
        inp = client_module.InferInput(t.name, list(t.shape), t.datatype)
        if protocol == "grpc":
            inp.set_data_from_numpy(t.array())
        else:
            inp.set_data_from_numpy(t.array(), binary_data=binary)
        inputs.append(inp)
    if protocol == "grpc":
        outputs = [client_module.InferRequestedOutput(n) for n in output_names]
    else:
        outputs = [client_module.InferRequestedOutput(n, binary_data=binary) for n in output_names]
    with client_module.InferenceServerClient(url) as client:
        result = client.infer(desc.model, inputs, outputs=outputs)
    return {n: result.as_numpy(n) for n in output_names}


def _metadata_outputs(meta: dict, desc: descriptor.Descriptor, sample: descriptor.Sample, where: str) -> list[str]:
    """The server's outputs of desc.model; SmokeFailure when a sample's tensor is not what it serves."""
    served_in = {t.get("name"): t.get("datatype") for t in meta.get("inputs", [])}
    served_out = {t.get("name"): t.get("datatype") for t in meta.get("outputs", [])}
    for kind, tensors, served in (("input", sample.inputs, served_in), ("output", sample.outputs, served_out)):
        for t in tensors:
            _expect(t.name in served, f"{where}: model {desc.model}: {kind} '{t.name}' of {desc.path} is not served "
                                      f"(server's {kind}s: {', '.join(served) or 'none'})")
            _expect(served[t.name] == t.datatype, f"{where}: model {desc.model}: {kind} '{t.name}' is {served[t.name]} "
                                                  f"on the server, {t.datatype} in {desc.path}")
    return list(served_out)


def run(http_url: str, grpc_url: str, out=None, *, repository: Path | None = None, models: list[str] | None = None) -> None:
    """Raise SmokeFailure with a clear message unless the server answers every sample of every model of
    repository (default: the shipped one; models: only those) correctly on HTTP JSON, HTTP binary and gRPC.
    Prints one `ok  <path> <model> ...` line per model and path."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    descs = descriptors_of(Path(repository or settings.MODEL_REPOSITORY), models)
    paths = [("http-json", f"HTTP JSON   {http_url}", http_url), ("http-binary", f"HTTP binary {http_url}", http_url),
             ("grpc", f"gRPC        {grpc_url}", grpc_url)]
    try:
        with httpclient.InferenceServerClient(http_url) as client:
            _expect(client.is_server_live(), f"HTTP {http_url}: server not live")
            _expect(client.is_server_ready(), f"HTTP {http_url}: server not ready")
            metas = {}
            for desc in descs:
                _expect(client.is_model_ready(desc.model), f"HTTP {http_url}: model {desc.model} not ready")
                metas[desc.model] = client.get_model_metadata(desc.model)
        with grpcclient.InferenceServerClient(grpc_url) as client:
            _expect(client.is_server_ready(), f"gRPC {grpc_url}: server not ready")
            grpc_metas = {d.model: client.get_model_metadata(d.model, as_json=True) for d in descs}
        answers = []
        for desc in descs:
            for protocol, where, url in paths:
                meta = grpc_metas[desc.model] if protocol == "grpc" else metas[desc.model]
                got = []
                for sample in desc.samples:
                    names = _metadata_outputs(meta, desc, sample, where)
                    got.append((sample, infer(protocol, url, desc, sample, names)))
                answers.append((desc, where, got))
    except InferenceServerException as exc:
        raise SmokeFailure(f"request failed: {exc}") from None
    except (ConnectionError, OSError) as exc:
        raise SmokeFailure(f"cannot reach the server ({http_url} / {grpc_url}): {exc}") from None
    for desc, where, got in answers:
        for i, (sample, outputs) in enumerate(got):
            problem = descriptor.check(desc, sample, outputs)
            _expect(problem is None, f"{where}: model {desc.model} sample {i}: {problem}")
        print(f"ok  {where}  {desc.model}  {_summary(got[0][1])}", file=out or sys.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops smoke", description=__doc__)
    parser.add_argument("--url", default=f"localhost:{settings.port('http')}", help="HTTP host:port")
    parser.add_argument("--grpc-url", default=None, help="gRPC host:port (default: the HTTP host with the gRPC port)")
    parser.add_argument("--repository", type=Path, default=settings.MODEL_REPOSITORY,
                        help="model repository whose descriptors (tritonops.json) to send (default: the shipped one)")
    parser.add_argument("--model", action="append", default=None, help="only this model (repeatable)")
    args = parser.parse_args(argv)
    grpc_url = args.grpc_url or settings.address_on(args.url, "grpc")
    try:
        for desc in descriptors_of(args.repository, args.model):
            print(f"{desc.model}: {len(desc.samples)} sample(s) from {desc.path}"
                  + (f", checked by the {desc.reference} reference" if desc.reference else ""))
        run(args.url, grpc_url, repository=args.repository, models=args.model)
    except SmokeFailure as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    print("smoke: all checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
