"""Every file a host's stack runs from, rendered in one place: the compose env file and the gateway's
HAProxy configuration, TLS PEM and API keys.

`make up` (tritonops.stack.compose) writes them for this machine. The Ansible triton role runs
`tritonops host-files` on the controller for each host and copies what it writes into the release, so
both paths give the same bytes for the same settings (tests/ansible/test_host_files.py). The values
are versions.env's keys: a host changes them with `triton_compose_env` and the role's own variables,
`make up` with same-named environment variables.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings
from . import gateway, gatewaycheck, images

ENV_FILE = "compose.env"
# The gateway's files: their env keys (compose.yaml mounts each read-only) and names in the gateway folder.
GATEWAY_FILES = {"GATEWAY_CONFIG": "haproxy.cfg", "GATEWAY_TLS_PEM": "tls.pem", "GATEWAY_API_KEYS": "api-keys"}
# Where compose.yaml mounts them inside the gateway container.
GATEWAY_INSIDE = "/usr/local/etc/haproxy"
# HAProxy's admin socket inside the gateway container (the stack's own checks use it).
GATEWAY_ADMIN_SOCKET = "/tmp/haproxy-admin.sock"
# Host-side ports: the published port of each container port, overridable one by one.
HOST_PORTS = {"HOST_HTTP_PORT": "HTTP_PORT", "HOST_GRPC_PORT": "GRPC_PORT", "HOST_METRICS_PORT": "METRICS_PORT",
              "HOST_PROMETHEUS_PORT": "PROMETHEUS_PORT", "HOST_GRAFANA_PORT": "GRAFANA_PORT"}
# Seconds the engine waits beyond Triton's exit timeout before SIGKILL (compose's stop_grace_period).
STOP_MARGIN_SECS = 10


class HostFilesError(ValueError):
    pass


@dataclass(frozen=True)
class HostFiles:
    env: dict[str, str]                                     # the env file's values
    gateway: dict[str, str] = field(default_factory=dict)  # file name in the gateway folder -> content
    checks: list[dict] = field(default_factory=list)        # the gateway's health check requests

    def env_text(self) -> str:
        return "# Written by tritonops.stack.hostfiles from versions.env; do not edit.\n" + "".join(
            f"{k}={v}\n" for k, v in sorted(self.env.items()))

    def write_gateway(self, gateway_dir: Path) -> None:
        """The gateway's files in gateway_dir (0700: only its owner, root on a host, lists it; the files
        are 0644 for the container's haproxy user, which gets them mounted one by one)."""
        gateway_dir.mkdir(parents=True, exist_ok=True)
        gateway_dir.chmod(0o700)
        for name, text in self.gateway.items():
            (gateway_dir / name).write_text(text)
            (gateway_dir / name).chmod(0o644)

    def write(self, env_file: Path, gateway_dir: Path) -> None:
        self.write_gateway(gateway_dir)
        env_file.write_text(self.env_text())


def derive(values: dict[str, str]) -> dict[str, str]:
    """versions.env-style values completed with what compose needs that follows from them: the host
    ports (default: the container's), the stop grace period and the image names; bad values named."""
    values = dict(values)
    for host_key, container_key in HOST_PORTS.items():
        values.setdefault(host_key, values[container_key])
    for key in [*HOST_PORTS, *HOST_PORTS.values()]:
        if not str(values[key]).isdigit() or not 0 < int(values[key]) < 65536:
            raise HostFilesError(f"{key}={values[key]!r}: expected a port number 1-65535")
    if not str(values["TRITON_REPLICAS"]).isdigit() or int(values["TRITON_REPLICAS"]) < 1:
        raise HostFilesError(f"TRITON_REPLICAS={values['TRITON_REPLICAS']!r}: expected a whole number >= 1")
    if values["GRAFANA_ANONYMOUS"] not in ("true", "false"):
        raise HostFilesError(f"GRAFANA_ANONYMOUS={values['GRAFANA_ANONYMOUS']!r}: expected true or false")
    if not str(values["TRITON_EXIT_TIMEOUT_SECS"]).isdigit():
        raise HostFilesError(f"TRITON_EXIT_TIMEOUT_SECS={values['TRITON_EXIT_TIMEOUT_SECS']!r}: expected whole seconds")
    values.setdefault("TRITON_STOP_GRACE_PERIOD", f"{int(values['TRITON_EXIT_TIMEOUT_SECS']) + STOP_MARGIN_SECS}s")
    # The images compose runs (compose.yaml, compose.gpu.yaml), named by tritonops.stack.images' one builder.
    values.setdefault("TRITON_IMAGE_CPU", images.image_ref(values, "cpu"))
    values.setdefault("TRITON_IMAGE_GPU", images.image_ref(values, "gpu"))
    values.setdefault("TRITON_GATEWAY_IMAGE", images.gateway_ref(values))
    return {k: str(v) for k, v in values.items()}


def _file_value(values: dict[str, str], key: str) -> Path | None:
    """A key naming a file: None when empty, else the file, which must exist."""
    if not values.get(key):
        return None
    path = Path(values[key]).expanduser()
    if not path.is_file():
        raise HostFilesError(f"{key}={values[key]}: no such file")
    return path


def gateway_files(values: dict[str, str], repository: Path, unlimited_sources: list[str]) -> tuple[dict[str, str], list[dict]]:
    """The gateway's haproxy.cfg, tls.pem and api-keys (empty while TLS or keys are off) from the values
    (GATEWAY_TLS_CERT + GATEWAY_TLS_KEY, GATEWAY_API_KEYS_FILE) and the repository's health checks."""
    cert, key = _file_value(values, "GATEWAY_TLS_CERT"), _file_value(values, "GATEWAY_TLS_KEY")
    if bool(cert) != bool(key):
        raise HostFilesError("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY turn TLS on together: set both, or neither")
    keys = _file_value(values, "GATEWAY_API_KEYS_FILE")
    backend = gateway.Backend("triton", "triton", int(values["HTTP_PORT"]), int(values["GRPC_PORT"]),
                              int(values["METRICS_PORT"]), replicas=int(values["TRITON_REPLICAS"]))
    try:
        key_lines = gateway.read_api_keys(keys) if keys else []
        if keys and not key_lines:
            raise HostFilesError(f"GATEWAY_API_KEYS_FILE={keys}: holds no key (one key per line)")
        checks = gatewaycheck.checks(repository, int(values["GATEWAY_MAX_BODY_BYTES"]))
        config = gateway.render(
            [backend], resolvers=gateway.DOCKER_DNS, admin_socket=GATEWAY_ADMIN_SOCKET, values=values,
            checks=checks, unlimited_sources=unlimited_sources,
            tls_pem=f"{GATEWAY_INSIDE}/{GATEWAY_FILES['GATEWAY_TLS_PEM']}" if cert else "",
            api_keys_file=f"{GATEWAY_INSIDE}/{GATEWAY_FILES['GATEWAY_API_KEYS']}" if keys else "")
    except (gatewaycheck.CheckError, gateway.GatewayError) as exc:
        raise HostFilesError(str(exc)) from None
    files = {GATEWAY_FILES["GATEWAY_CONFIG"]: config,
             GATEWAY_FILES["GATEWAY_TLS_PEM"]: cert.read_text().rstrip("\n") + "\n" + key.read_text() if cert else "",
             GATEWAY_FILES["GATEWAY_API_KEYS"]: "".join(f"{k}\n" for k in key_lines)}
    return files, checks


def render(values: dict[str, str], *, gateway_dir: str, repository: Path,
           unlimited_sources: list[str] | None = None, gateway_inputs: dict[str, str] | None = None) -> HostFiles:
    """One host's files from its values (versions.env with the host's changes, MODEL_REPOSITORY_DIR
    among them): the env file names the gateway's files in gateway_dir (a path as compose resolves it:
    absolute, or relative to the project folder). repository: the model repository on this machine,
    whose descriptors give the gateway's health check. gateway_inputs: GATEWAY_TLS_CERT, GATEWAY_TLS_KEY
    and GATEWAY_API_KEYS_FILE on this machine when they are not the host's values (a deploy's controller)."""
    values = derive(values)
    files, checks = gateway_files({**values, **(gateway_inputs or {})}, repository, list(unlimited_sources or []))
    env = {**values, **{key: f"{gateway_dir}/{name}" for key, name in GATEWAY_FILES.items()}}
    return HostFiles(env, files, checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tritonops host-files", description=__doc__ + "\nThis command writes a release's files: OUT/compose.env, "
        "whose paths are relative to OUT (compose's project folder on the host), and OUT/gateway/. It prints the "
        "gateway's health check requests as JSON.")
    parser.add_argument("--out", type=Path, required=True, help="folder to write compose.env and gateway/ into")
    parser.add_argument("--repository", type=Path, default=settings.MODEL_REPOSITORY,
                        help="the model repository the host will serve, on this machine (its descriptors give the checks)")
    parser.add_argument("--unlimited-source", action="append", default=[], metavar="ADDRESS",
                        help="an address exempt from the per-source limits (a fleet gateway); repeatable")
    parser.add_argument("--tls-cert", default="", help="the gateway's certificate (PEM) on this machine; with --tls-key")
    parser.add_argument("--tls-key", default="", help="its private key (PEM) on this machine")
    parser.add_argument("--api-keys-file", default="", help="the gateway's API keys on this machine (0600, one per line)")
    parser.add_argument("--values", type=Path, metavar="JSON", required=True,
                        help="a JSON object of the host's values over versions.env, MODEL_REPOSITORY_DIR among them "
                             "(- reads stdin)")
    args = parser.parse_args(argv)
    try:
        host = json.load(sys.stdin if str(args.values) == "-" else args.values.open())
        if not isinstance(host, dict):
            raise HostFilesError(f"--values {args.values}: expected a JSON object of KEY: value")
        if "MODEL_REPOSITORY_DIR" not in host:  # where the release keeps its copy: the role's layout, not ours
            raise HostFilesError(f"--values {args.values}: no MODEL_REPOSITORY_DIR (the release's model repository, "
                                 "relative to compose.env)")
        values = {**settings.versions(), **{k: str(v) for k, v in host.items()}}
        files = render(values, gateway_dir="./gateway", repository=args.repository,
                       unlimited_sources=args.unlimited_source,
                       gateway_inputs={"GATEWAY_TLS_CERT": args.tls_cert, "GATEWAY_TLS_KEY": args.tls_key,
                                       "GATEWAY_API_KEYS_FILE": args.api_keys_file})
        args.out.mkdir(parents=True, exist_ok=True)
        files.write(args.out / ENV_FILE, args.out / "gateway")
    except (HostFilesError, images.BuildError, OSError, json.JSONDecodeError) as exc:
        print(f"host-files: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"checks": files.checks}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
