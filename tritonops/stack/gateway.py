"""The gateway: HAProxy in front of Triton, from the one template gateway/haproxy.cfg.j2.

A host's copy is rendered by tritonops.stack.hostfiles (for `make up` and, on the controller, for the
Ansible triton role); the benchmark and the tests render their own here. `LocalGateway` runs this machine's haproxy binary (Debian's
package) in front of local tritonservers, the way `LocalServer` runs the wheel's Triton.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .. import settings
from ..serving.server import LoopbackUrls
from . import gatewaycheck

HOME = settings.ROOT / "gateway"
TEMPLATE = HOME / "haproxy.cfg.j2"
# A soft stop's limit, written once in the template (compose's stop_grace_period exceeds it: a test checks).
HARD_STOP_AFTER_S = int(re.search(r"^\s*hard-stop-after (\d+)s$", TEMPLATE.read_text(), re.M)[1])
# Docker's embedded DNS: a compose service name resolves to every replica's address.
DOCKER_DNS = "127.0.0.11:53"


# Connections of the metrics and stats listeners each, apart from GATEWAY_MAXCONN (the template's value).
SIDE_MAXCONN = int(re.search(r"gateway_side_maxconn = (\d+)", TEMPLATE.read_text())[1])
# API keys shorter than this are refused when rendering (32 hex digits = 128 bits).
MIN_KEY_LENGTH = 32


class GatewayError(RuntimeError):
    pass


@dataclass(frozen=True)
class Backend:
    """One Triton behind the gateway; replicas > 1 only with DNS (every address of a compose service)."""

    name: str
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    replicas: int = 1


def variables(backends: list[Backend], *, bind: str = "0.0.0.0", ports: dict[str, int] | None = None,
              resolvers: str = "", tls_pem: str = "", api_keys_file: str = "", admin_socket: str,
              values: dict[str, str] | None = None, unlimited_sources: list[str] | None = None,
              repository: Path | None = None, checks: list[dict] | None = None) -> dict:
    """The template's gateway_* variables (Ansible's role passes the same names). unlimited_sources:
    addresses exempt from the per-source limits (a fleet's gateways). repository: the model repository
    the backends serve (versions.env MODEL_REPOSITORY by default), whose descriptors give the health
    check (tritonops.stack.gatewaycheck), unless checks gives its requests."""
    v = values or settings.versions()
    try:
        if checks is None:
            checks = gatewaycheck.checks(repository or settings.MODEL_REPOSITORY, int(v["GATEWAY_MAX_BODY_BYTES"]))
    except gatewaycheck.CheckError as exc:
        raise GatewayError(str(exc)) from None
    ports = {"http": int(v["HTTP_PORT"]), "grpc": int(v["GRPC_PORT"]), "metrics": int(v["METRICS_PORT"]),
             "stats": int(v["GATEWAY_STATS_PORT"]), **(ports or {})}
    return {
        "gateway_backends": [b.__dict__ for b in backends], "gateway_bind": bind,
        "gateway_http_port": ports["http"], "gateway_grpc_port": ports["grpc"],
        "gateway_metrics_port": ports["metrics"], "gateway_stats_port": ports["stats"],
        "gateway_resolvers": resolvers, "gateway_tls_pem": tls_pem, "gateway_api_keys_file": api_keys_file,
        "gateway_admin_socket": admin_socket, "gateway_checks": checks,
        "gateway_max_body_bytes": int(v["GATEWAY_MAX_BODY_BYTES"]), "gateway_maxconn": int(v["GATEWAY_MAXCONN"]),
        "gateway_threads": int(v["GATEWAY_THREADS"]),
        "gateway_server_maxconn": int(v["GATEWAY_SERVER_MAXCONN"]),
        "gateway_timeout_request": v["GATEWAY_TIMEOUT_REQUEST"], "gateway_timeout_server": v["GATEWAY_TIMEOUT_SERVER"],
        "gateway_log_level": v["GATEWAY_LOG_LEVEL"],
        "gateway_h2_max_streams": int(v["GATEWAY_H2_MAX_STREAMS"]),
        "gateway_conn_per_source": int(v["GATEWAY_CONN_PER_SOURCE"]),
        "gateway_req_rate_per_source": int(v["GATEWAY_REQ_RATE_PER_SOURCE"]),
        "gateway_unlimited_sources": list(unlimited_sources or []),
    }


def memory_bytes(text: str) -> int:
    """A Docker memory size (1280m, 2g, 512k, 1048576b, plain bytes) in bytes."""
    m = re.fullmatch(r"(\d+)([bkmg]?)", text.strip().lower())
    if not m:
        raise GatewayError(f"GATEWAY_MEMORY_LIMIT={text!r}: not a size (e.g. 1280m)")
    return int(m[1]) * 1024 ** "bkmg".index(m[2] or "b")


def worst_case_bytes(values: dict[str, str]) -> int:
    """Buffers the gateway may hold at once: every connection of both client ports with every HTTP/2
    stream sending part of a body (one buffer each, plus the connection's own), and metrics + stats
    (SIDE_MAXCONN each, request + response buffers). TESTBED 7: 240 connections x 100 streams OOM-killed
    a 1.25 GiB gateway."""
    bufsize = int(values["GATEWAY_MAX_BODY_BYTES"]) + 65536  # tune.bufsize in the template
    client = 2 * int(values["GATEWAY_MAXCONN"]) * (int(values["GATEWAY_H2_MAX_STREAMS"]) + 1)
    return (client + 2 * SIDE_MAXCONN * 2) * bufsize


def check_memory(values: dict[str, str]) -> None:
    """Refuses limits whose worst case does not fit in the gateway container's memory limit."""
    worst, limit = worst_case_bytes(values), memory_bytes(values["GATEWAY_MEMORY_LIMIT"])
    if worst > limit:
        raise GatewayError(
            f"the gateway's worst case, 2 ports x GATEWAY_MAXCONN={values['GATEWAY_MAXCONN']} x "
            f"(GATEWAY_H2_MAX_STREAMS={values['GATEWAY_H2_MAX_STREAMS']} + 1) x "
            f"(GATEWAY_MAX_BODY_BYTES={values['GATEWAY_MAX_BODY_BYTES']} + 64 KiB) + metrics/stats = "
            f"{worst} bytes ({worst / 2**20:.0f} MiB), exceeds GATEWAY_MEMORY_LIMIT={values['GATEWAY_MEMORY_LIMIT']} "
            f"({limit} bytes): lower a limit or raise the memory")


def read_api_keys(path: Path) -> list[str]:
    """The keys in a GATEWAY_API_KEYS_FILE (one per line, # comments): the file must be private (0600,
    no group or other bits) and every key at least MIN_KEY_LENGTH characters; a short one is named by
    file and line, never printed."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise GatewayError(f"{path}: mode {mode:04o}, API keys need 0600 (chmod 600 {path})")
    keys = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        if len(key) < MIN_KEY_LENGTH or any(c in key for c in " \t,"):
            raise GatewayError(f"{path}:{number}: an API key needs at least {MIN_KEY_LENGTH} characters and "
                               f"no space, tab or comma (e.g. openssl rand -hex 32)")
        keys.append(key)
    return keys


def render(backends: list[Backend], **kwargs) -> str:
    if not backends:
        raise GatewayError("the gateway needs at least one backend")
    check_memory(kwargs.get("values") or settings.versions())
    # trim_blocks as Ansible's template module renders it, so both give the same file.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HOME), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, keep_trailing_newline=True)
    try:
        return env.get_template(TEMPLATE.name).render(variables(backends, **kwargs))
    except (jinja2.TemplateError, KeyError, ValueError) as exc:
        raise GatewayError(f"{TEMPLATE}: cannot render ({exc})") from None


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.path.exists(p)), None)
    if not found:
        raise GatewayError("haproxy is not installed here (apt-get install haproxy)")
    return found


def check_config(path: Path) -> None:
    """`haproxy -c`: the rendered file is valid for this HAProxy (names the line when it is not)."""
    done = subprocess.run([haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise GatewayError(f"{path} is not a valid HAProxy configuration:\n{done.stdout}{done.stderr}")


def server_states(stats_csv: str) -> dict[tuple[str, str], str]:
    """(backend, server) -> UP/DOWN/MAINT/..., from HAProxy's stats CSV (`show stat`, or /stats;csv)."""
    lines = stats_csv.splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
    return {(r["pxname"], r["svname"]): r["status"] for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")}


class LocalGateway(LoopbackUrls):
    """This machine's haproxy (master-worker, foreground) with a rendered config, on 127.0.0.1."""

    def __init__(self, backends: list[Backend], workdir: Path, ports: dict[str, int], **kwargs):
        # absolute: HAProxy reads a stats socket address as a UNIX path only when it starts with "/"
        # (make bench --report-dir reports/x had the gateway refused: "missing port specification")
        workdir = workdir.resolve()
        self.workdir, self.ports = workdir, ports
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "haproxy.cfg"
        if kwargs.get("api_keys_file"):
            read_api_keys(Path(kwargs["api_keys_file"]))
        self.admin_socket = workdir / "admin.sock"
        self.config.write_text(render(backends, bind="127.0.0.1", ports=ports,
                                      admin_socket=str(self.admin_socket), **kwargs))
        self.log_path = workdir / "haproxy.log"
        self.proc: subprocess.Popen | None = None

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['stats']}"

    def start(self, wait_up: float = 60) -> "LocalGateway":
        check_config(self.config)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([haproxy_binary(), "-W", "-db", "-f", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + wait_up
        while not self.healthy():
            if self.proc.poll() is not None:
                raise GatewayError(f"haproxy exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                states = self.server_states()  # before the stop closes the admin socket
                self.stop()
                raise GatewayError(f"no backend UP behind the gateway after {wait_up:.0f}s: {states}")
            time.sleep(0.2)
        return self

    def healthy(self) -> bool:
        """monitor-uri: 200 while at least one Triton answers the inference check."""
        try:
            with urllib.request.urlopen(f"{self.stats_url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.admin_socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_states(self) -> dict[tuple[str, str], str]:
        """(backend, server) -> UP/DOWN/MAINT/..., from `show stat` on the admin socket."""
        return server_states(self.admin("show stat"))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGUSR1)  # soft stop: finish what is in flight
            try:
                self.proc.wait(HARD_STOP_AFTER_S + 5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self) -> "LocalGateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops gateway", description=__doc__)
    parser.add_argument("what", choices=["render", "checks"],
                        help="render: print the configuration for one Triton (compose's); checks: print the health "
                             "check's requests derived from the repository, as JSON (the Ansible role's input)")
    parser.add_argument("--backend", default="triton", help="Triton's host name or address")
    parser.add_argument("--repository", type=Path, default=settings.MODEL_REPOSITORY,
                        help="the model repository the gateway serves (default: versions.env MODEL_REPOSITORY)")
    parser.add_argument("--max-body-bytes", type=int, help="checks: the gateway's body cap (default: versions.env "
                        "GATEWAY_MAX_BODY_BYTES; a host may set its own)")
    parser.add_argument("--check", action="store_true", help="also validate it with this machine's haproxy -c")
    args = parser.parse_args(argv)
    v = settings.versions()
    if args.what == "checks":
        try:
            checks = gatewaycheck.checks(args.repository, args.max_body_bytes or int(v["GATEWAY_MAX_BODY_BYTES"]))
        except gatewaycheck.CheckError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(checks, indent=1))
        return 0
    backend = Backend("triton", args.backend, int(v["HTTP_PORT"]), int(v["GRPC_PORT"]), int(v["METRICS_PORT"]))
    try:
        text = render([backend], admin_socket="/tmp/haproxy-admin.sock", resolvers=DOCKER_DNS,
                      repository=args.repository)
        if args.check:
            path = settings.ROOT / ".cache" / "gateway" / "haproxy.cfg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            check_config(path)
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
