"""Send the seed's request over HTTP (JSON), HTTP (binary tensors) and gRPC and check every answer."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import contract, settings


class SmokeFailure(AssertionError):
    pass


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise SmokeFailure(message)


def check_metadata(meta: dict, where: str) -> None:
    """Names, datatypes and shapes of the model metadata (HTTP's dict form)."""
    want_in = {"name": contract.INPUT, "datatype": contract.DATATYPE, "shape": [-1, contract.IN_FEATURES]}
    want_out = {"name": contract.OUTPUT, "datatype": contract.DATATYPE, "shape": [-1, contract.OUT_FEATURES]}
    def summary(tensors):  # gRPC's JSON form spells int64 dims as strings
        return [{"name": t.get("name"), "datatype": t.get("datatype"), "shape": [int(d) for d in t.get("shape", [])]}
                for t in tensors]

    got_in, got_out = summary(meta.get("inputs", [])), summary(meta.get("outputs", []))
    _expect(got_in == [want_in], f"{where}: model inputs {got_in}, expected [{want_in}]")
    _expect(got_out == [want_out], f"{where}: model outputs {got_out}, expected [{want_out}]")


def infer_http(url: str, x: np.ndarray, binary: bool) -> np.ndarray:
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(url) as client:
        inputs, outputs = contract.http_inputs(x, binary)
        return client.infer(contract.MODEL, inputs, model_version=contract.VERSION, outputs=outputs).as_numpy(contract.OUTPUT)


def infer_grpc(url: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        inputs, outputs = contract.grpc_inputs(x)
        return client.infer(contract.MODEL, inputs, model_version=contract.VERSION, outputs=outputs).as_numpy(contract.OUTPUT)


def run(http_url: str, grpc_url: str, x: np.ndarray = contract.SEED_X, out=None) -> None:
    """Raise SmokeFailure with a clear message unless the server answers x correctly on every path."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    try:
        with httpclient.InferenceServerClient(http_url) as client:
            _expect(client.is_server_live(), f"HTTP {http_url}: server not live")
            _expect(client.is_server_ready(), f"HTTP {http_url}: server not ready")
            _expect(client.is_model_ready(contract.MODEL, contract.VERSION),
                    f"HTTP {http_url}: model {contract.MODEL} version {contract.VERSION} not ready")
            check_metadata(client.get_model_metadata(contract.MODEL, contract.VERSION), f"HTTP {http_url}")
        with grpcclient.InferenceServerClient(grpc_url) as client:
            _expect(client.is_server_ready(), f"gRPC {grpc_url}: server not ready")
            check_metadata(client.get_model_metadata(contract.MODEL, contract.VERSION, as_json=True), f"gRPC {grpc_url}")
        answers = {
            f"HTTP JSON   {http_url}": infer_http(http_url, x, binary=False),
            f"HTTP binary {http_url}": infer_http(http_url, x, binary=True),
            f"gRPC        {grpc_url}": infer_grpc(grpc_url, x),
        }
    except InferenceServerException as exc:
        raise SmokeFailure(f"request failed: {exc}") from None
    except (ConnectionError, OSError) as exc:
        raise SmokeFailure(f"cannot reach the server ({http_url} / {grpc_url}): {exc}") from None
    for where, y in answers.items():
        problem = contract.check_output(x, y)
        _expect(problem is None, f"{where}: {problem}")
        print(f"ok  {where}  y = {y.ravel().tolist()}", file=out or sys.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops smoke", description=__doc__)
    parser.add_argument("--url", default=f"localhost:{settings.port('http')}", help="HTTP host:port")
    parser.add_argument("--grpc-url", default=None, help="gRPC host:port (default: the HTTP host with the gRPC port)")
    args = parser.parse_args(argv)
    grpc_url = args.grpc_url or settings.address_on(args.url, "grpc")
    print(f"seed request x = {contract.SEED_X.tolist()}")
    try:
        run(args.url, grpc_url)
    except SmokeFailure as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    print("smoke: all checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
