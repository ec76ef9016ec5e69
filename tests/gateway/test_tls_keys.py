"""TLS and API keys at the gateway, both optional: a certificate made with openssl, curl and
tritonclient (HTTP and gRPC, ssl=True) with and without the key."""
from __future__ import annotations

import subprocess

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from certs import self_signed
from gateway_harness import backend, start_gateway
from tritonclient.utils import InferenceServerException

from tritonops.models import linear

KEY = "k-3f9a1c77e2" * 3  # at least gateway.MIN_KEY_LENGTH characters
INFER = f"/v2/models/{linear.MODEL}/infer"


@pytest.fixture(scope="module")
def tls(tmp_path_factory, replicas):
    """(gateway with TLS + API key, CA file): a self-signed certificate for localhost/127.0.0.1."""
    work = tmp_path_factory.mktemp("tls")
    tls = self_signed(work)
    (work / "api-keys").write_text(f"{KEY}\n")
    (work / "api-keys").chmod(0o600)
    proxy = start_gateway([backend("a", replicas["a"])], work / "gateway", tls_pem=str(tls.pem),
                          api_keys_file=str(work / "api-keys"))
    yield proxy, tls.cert
    proxy.stop()


def curl(*args: str) -> tuple[int, str]:
    """(HTTP status, body) from curl; status 0 when no HTTP answer came."""
    done = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", *args],
                          capture_output=True, text=True)
    body, _, code = done.stdout.rpartition("\n")
    return int(code or 0), body + done.stderr


def test_https_with_key_answers_and_without_key_is_401(tls):
    gw, ca = tls
    body = ['-H', 'Content-Type: application/json', '--data', '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[[2,3,4]]}]}']
    url = f"https://localhost:{gw.ports['http']}{INFER}"
    status, text = curl("--cacert", str(ca), "-H", f"x-api-key: {KEY}", *body, url)
    assert status == 200 and '"name":"y"' in text, text
    status, text = curl("--cacert", str(ca), *body, url)
    assert status == 401 and "x-api-key" in text, text
    status, text = curl("--cacert", str(ca), "-H", "x-api-key: wrong", *body, url)
    assert status == 401, text
    # health stays open for load balancers' probes; plain HTTP on the TLS port gets no answer
    assert curl("--cacert", str(ca), f"https://localhost:{gw.ports['http']}/v2/health/ready")[0] == 200
    # HAProxy's TLS handshake fails on the plain request and closes: curl exits 52 (empty reply), no
    # status. A refused connection (exit 7) or any HTTP answer would mean something else listens there.
    plain = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                            f"http://localhost:{gw.ports['http']}/v2/health/ready"], capture_output=True, text=True)
    assert (plain.returncode, plain.stdout) == (52, "000"), plain
    # a client that does not trust the certificate refuses it
    assert curl(f"https://localhost:{gw.ports['http']}/v2/health/ready")[0] == 0


def test_tritonclient_http_ssl(tls):
    gw, ca = tls
    client = httpclient.InferenceServerClient(f"localhost:{gw.ports['http']}", ssl=True,
                                              ssl_options={"ca_certs": str(ca)})
    try:
        inputs, outputs = linear.http_inputs(linear.SEED_X)
        y = client.infer(linear.MODEL, inputs, outputs=outputs, headers={"x-api-key": KEY}).as_numpy(linear.OUTPUT)
        assert linear.check_output(linear.SEED_X, y) is None
        with pytest.raises(InferenceServerException) as refused:
            client.infer(linear.MODEL, inputs, outputs=outputs)
        assert "x-api-key" in str(refused.value)
    finally:
        client.close()


def test_tritonclient_grpc_ssl(tls):
    gw, ca = tls
    with grpcclient.InferenceServerClient(f"localhost:{gw.ports['grpc']}", ssl=True,
                                          root_certificates=str(ca)) as client:
        inputs, outputs = linear.grpc_inputs(linear.SEED_X)
        y = client.infer(linear.MODEL, inputs, outputs=outputs, headers={"x-api-key": KEY}).as_numpy(linear.OUTPUT)
        assert linear.check_output(linear.SEED_X, y) is None
        assert client.is_server_ready()  # health is exempt, as over HTTP
        with pytest.raises(InferenceServerException) as refused:
            client.infer(linear.MODEL, inputs, outputs=outputs)
        assert "UNAUTHENTICATED" in str(refused.value)
        with pytest.raises(InferenceServerException) as refused:
            client.get_log_settings(headers={"x-api-key": KEY})  # a key does not open management APIs
        assert "PERMISSION_DENIED" in str(refused.value)
