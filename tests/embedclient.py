"""The embed model asked over HTTP (binary tensors) and gRPC, its answers checked against the
in-process reference (tritonops.models.embedding.check_output): for the suites that reach a server through
a gateway (the compose stack, a deployed host) rather than start one."""
from __future__ import annotations

import numpy as np

from tritonops.models import embedding


def infer_http(url: str, texts) -> np.ndarray:
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(url, connection_timeout=30, network_timeout=60) as client:
        text = httpclient.InferInput(embedding.INPUT, [len(texts), 1], embedding.DATATYPE)
        text.set_data_from_numpy(embedding.texts_array(texts), binary_data=True)
        wanted = httpclient.InferRequestedOutput(embedding.OUTPUT, binary_data=True)
        return client.infer(embedding.MODEL, [text], model_version=embedding.VERSION, outputs=[wanted]).as_numpy(embedding.OUTPUT)


def infer_grpc(url: str, texts) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        text = grpcclient.InferInput(embedding.INPUT, [len(texts), 1], embedding.DATATYPE)
        text.set_data_from_numpy(embedding.texts_array(texts))
        wanted = grpcclient.InferRequestedOutput(embedding.OUTPUT)
        return client.infer(embedding.MODEL, [text], model_version=embedding.VERSION, outputs=[wanted],
                            client_timeout=60).as_numpy(embedding.OUTPUT)


def problems(http_url: str, grpc_url: str, texts=embedding.SENTENCES) -> list[str]:
    """What is wrong with embed's answers for texts over HTTP and gRPC (empty: both right)."""
    texts = list(texts)
    want = embedding.reference(texts)
    found = []
    for path, infer, url in (("HTTP", infer_http, http_url), ("gRPC", infer_grpc, grpc_url)):
        if problem := embedding.check_output(texts, infer(url, texts), want):
            found.append(f"{path} {url}: {problem}")
    return found
