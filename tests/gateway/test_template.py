"""The one template renders valid HAProxy configurations for each way it is used (compose with DNS
and replicas, fixed fleet addresses, TLS + API keys), and bad gateway settings are named."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from certs import self_signed

from tritonops import settings
from tritonops.stack import compose, gateway

V = settings.versions()


def rendered_and_checked(tmp_path, backends, **kwargs) -> str:
    path = tmp_path / "haproxy.cfg"
    path.write_text(gateway.render(backends, admin_socket=str(tmp_path / "admin.sock"), **kwargs))
    gateway.check_config(path)  # haproxy -c: raises with HAProxy's own message
    return path.read_text()


def test_compose_flavour_finds_every_replica_by_dns(haproxy, tmp_path):
    b = gateway.Backend("triton", "triton", 8000, 8001, 8002, replicas=3)
    text = rendered_and_checked(tmp_path, [b], resolvers=gateway.DOCKER_DNS)
    for i in (1, 2, 3):
        assert f"server triton{i} triton:8001 proto h2 check port 8000 check-proto h1 resolvers dns" in text
    assert f"bind 0.0.0.0:{V['HTTP_PORT']}\n" in text and f"bind 0.0.0.0:{V['GRPC_PORT']} proto h2\n" in text


def test_fleet_flavour_lists_fixed_addresses(haproxy, tmp_path):
    hosts = [gateway.Backend(f"gpu{i}", f"127.0.0.{i}", 8000, 8001, 8002) for i in (1, 2)]
    text = rendered_and_checked(tmp_path, hosts)
    assert "server gpu2 127.0.0.2:8000 check" in text and "resolvers" not in text


def test_tls_and_keys_flavour(haproxy, tmp_path):
    tls = self_signed(tmp_path)
    (tmp_path / "keys").write_text("k1" * 16 + "\n")
    (tmp_path / "keys").chmod(0o600)
    text = rendered_and_checked(tmp_path, [gateway.Backend("t", "127.0.0.1", 8000, 8001, 8002)],
                                tls_pem=str(tls.pem), api_keys_file=str(tmp_path / "keys"))
    assert text.count(f"ssl crt {tls.pem}") == 2 and "x-api-key" in text


def test_local_gateway_in_a_relative_workdir_renders_a_valid_config(haproxy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as `make bench BENCH_ARGS="--report-dir reports/x"` gives it
    gw = gateway.LocalGateway([gateway.Backend("t", "127.0.0.1", 8000, 8001, 8002)], gateway_dir := Path("gw"),
                              {k: 1 for k in ("http", "grpc", "metrics", "stats")}, values=V)
    gateway.check_config(gw.config)
    assert f"stats socket {tmp_path / gateway_dir / 'admin.sock'} " in gw.config.read_text()


def test_ports_and_limits_come_from_versions_env():
    values = {**V, "HTTP_PORT": "9100", "GATEWAY_MAX_BODY_BYTES": "4096"}
    text = gateway.render([gateway.Backend("t", "h", 9100, 9101, 9102)], admin_socket="/s", values=values)
    assert "bind 0.0.0.0:9100\n" in text and "gt 4096 }" in text and f"tune.bufsize {4096 + 65536}" in text


def test_per_source_limits_and_h2_streams_come_from_versions_env():
    text = gateway.render([gateway.Backend("t", "h", 1, 2, 3)], admin_socket="/s", values={
        **V, "GATEWAY_H2_MAX_STREAMS": "4", "GATEWAY_CONN_PER_SOURCE": "7", "GATEWAY_REQ_RATE_PER_SOURCE": "99"})
    assert "tune.h2.max-concurrent-streams 4\n" in text
    assert text.count("reject if { sc_conn_cur(0) gt 7 }") == 2 and text.count("sc_http_req_rate(0) gt 99 }") == 2
    off = gateway.render([gateway.Backend("t", "h", 1, 2, 3)], admin_socket="/s", values={
        **V, "GATEWAY_CONN_PER_SOURCE": "0", "GATEWAY_REQ_RATE_PER_SOURCE": "0"})
    assert "sc_conn_cur" not in off and "sc_http_req_rate" not in off


def test_refusals_come_before_the_body_is_buffered(tmp_path):
    """Key, management paths: checked on the headers, before wait-for-body holds a buffer."""
    (tmp_path / "keys").write_text("k" * 32 + "\n")
    text = gateway.render([gateway.Backend("t", "h", 1, 2, 3)], admin_socket="/s", api_keys_file=str(tmp_path / "keys"))
    for frontend in text.split("\nfrontend ")[1:3]:  # http, grpc
        wait = frontend.index("http-request wait-for-body")
        assert frontend.index("key_known") < wait and frontend.index("refused at the gateway") < wait, frontend
        assert "req.fhdr_cnt(x-api-key) eq 1" in frontend and "req.fhdr(x-api-key) -m str -f" in frontend
        assert frontend.index("del-header x-api-key") > wait


def test_worst_case_memory_over_the_limit_is_refused_naming_both_numbers():
    assert gateway.worst_case_bytes(V) <= gateway.memory_bytes(V["GATEWAY_MEMORY_LIMIT"])  # the defaults fit
    values = {**V, "GATEWAY_H2_MAX_STREAMS": "100"}  # HAProxy's default: TESTBED 7's OOM
    worst = gateway.worst_case_bytes(values)
    with pytest.raises(gateway.GatewayError, match=rf"{worst} bytes .* exceeds GATEWAY_MEMORY_LIMIT=1280m \(1342177280 bytes\)"):
        gateway.render([gateway.Backend("t", "h", 1, 2, 3)], admin_socket="/s", values=values)
    assert gateway.memory_bytes("2g") == 2 * 2**30 and gateway.memory_bytes("512k") == 512 * 1024


@pytest.mark.parametrize("text,mode,message", [
    ("k" * 32 + "\n", 0o644, "mode 0644, API keys need 0600"),
    ("# keys\n" + "k" * 32 + "\nshort-key\n", 0o600, "keys:3: an API key needs at least 32 characters"),
    ("k" * 32 + ",x\n", 0o600, "keys:1: an API key needs"),
])
def test_api_keys_file_must_be_private_and_keys_long(tmp_path, text, mode, message):
    path = tmp_path / "keys"
    path.write_text(text)
    path.chmod(mode)
    with pytest.raises(gateway.GatewayError, match=message) as refused:
        gateway.read_api_keys(path)
    assert "short-key" not in str(refused.value)  # the key itself is never printed
    with pytest.raises(compose.ComposeError, match=message):
        compose.write_gateway(tmp_path / "gw", {**V, "GATEWAY_API_KEYS_FILE": str(path)})


def test_no_backend_is_an_error():
    with pytest.raises(gateway.GatewayError, match="at least one backend"):
        gateway.render([], admin_socket="/s")


@pytest.mark.parametrize("overrides,message", [
    ({"GATEWAY_TLS_CERT": "{cert}"}, "GATEWAY_TLS_CERT and GATEWAY_TLS_KEY turn TLS on together"),
    ({"GATEWAY_TLS_CERT": "/nonexistent/cert.pem", "GATEWAY_TLS_KEY": "{cert}"}, "GATEWAY_TLS_CERT=/nonexistent/cert.pem: no such file"),
    ({"GATEWAY_API_KEYS_FILE": "{empty}"}, "holds no key"),
    ({"TRITON_REPLICAS": "0"}, "TRITON_REPLICAS='0'"),
])
def test_bad_gateway_settings_are_named(tmp_path, overrides, message):
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "empty").write_text("# no keys yet\n")
    (tmp_path / "empty").chmod(0o600)
    overrides = {k: v.format(cert=tmp_path / "cert.pem", empty=tmp_path / "empty") for k, v in overrides.items()}
    with pytest.raises(compose.ComposeError, match=message.replace("(", r"\(")):
        compose.write_env(tmp_path / "stack.env", overrides)


def test_a_stop_outlasts_the_soft_stop_limit():
    """The gateway container's stop_grace_period leaves HAProxy its hard-stop-after: a soft stop waits for
    requests in flight and for a kept-alive client's next one (idle-close-on-response), not for SIGKILL."""
    grace = yaml.safe_load((settings.ROOT / "compose" / "compose.yaml").read_text())["services"]["gateway"]["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > gateway.HARD_STOP_AFTER_S, (grace, gateway.HARD_STOP_AFTER_S)
    assert "option idle-close-on-response" in gateway.TEMPLATE.read_text()
