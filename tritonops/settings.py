"""Versions, ports and paths, read from the repo's single source of truth: versions.env."""
from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VERSIONS_FILE = ROOT / "versions.env"


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse a KEY=VALUE file (comments and blank lines ignored); errors name the file and line."""
    values: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        values[key] = value
    return values


@functools.cache
def versions() -> dict[str, str]:
    if not VERSIONS_FILE.exists():  # e.g. `pip install .` copied the package away from its checkout
        raise FileNotFoundError(f"{VERSIONS_FILE} not found: tritonops runs from a checkout of its repo, "
                                "installed there with `pip install -e .`")
    return parse_env_file(VERSIONS_FILE)


def get(key: str) -> str:
    try:
        return versions()[key]
    except KeyError:
        raise KeyError(f"{VERSIONS_FILE}: no {key}= line") from None


def port(name: str) -> int:
    """Default port by role: 'http', 'grpc' or 'metrics'."""
    return int(get(f"{name.upper()}_PORT"))


def host_port(host: str, port_number: int) -> str:
    """host:port, an IPv6 address in brackets."""
    return f"[{host}]:{port_number}" if ":" in host else f"{host}:{port_number}"


def address_on(server_url: str, role: str) -> str:
    """host:port of a role's endpoint ('http', 'grpc', 'metrics') on the host named by an HTTP URL or
    host:port (a deployed host serves all three on the repo's ports): the one place that derives it."""
    parts = urlsplit(server_url if "://" in server_url else f"http://{server_url}")
    host = parts.hostname or "127.0.0.1"
    return host_port(host, port(role))


MODEL_REPOSITORY = ROOT / get("MODEL_REPOSITORY")
