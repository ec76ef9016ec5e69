"""The admin key that opens Triton's restricted management APIs (versions.env RESTRICTED_APIS).

Triton 2.51 takes `--http-restricted-api` and `--grpc-restricted-protocol` as
`<api,...>:<header>=<key>`: a request to one of those APIs without that header (gRPC: metadata)
is refused. `make serve`, the tests and `make up` read the key from ADMIN_KEY_FILE, written here
with `secrets` (mode 0600, folder 0700) the first time it is needed.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from .. import settings
from . import privatefile


GRPC_PREFIX = "triton-grpc-protocol-"


class AdminKeyError(RuntimeError):
    pass


def header() -> str:
    return settings.get("ADMIN_KEY_HEADER")


def default_file(value: str | None = None) -> Path:
    """ADMIN_KEY_FILE (or value) as a path: absolute, or relative to the repo root."""
    path = Path(value if value is not None else settings.get("ADMIN_KEY_FILE")).expanduser()
    return path if path.is_absolute() else settings.ROOT / path


def ensure(path: Path | None = None) -> str:
    """The key in path (default ADMIN_KEY_FILE), generated there first if the file is missing."""
    path = Path(path) if path else default_file()
    try:
        privatefile.ensure(path, lambda: secrets.token_urlsafe(32) + "\n", "the admin key")
    except privatefile.PrivateFileError as exc:
        raise AdminKeyError(str(exc)) from None
    key = path.read_text().strip()
    if not key or any(c.isspace() or c in ",:=" for c in key):
        raise AdminKeyError(f"{path}: expected one key without spaces, ',', ':' or '=' (ADMIN_KEY_FILE in versions.env)")
    return key


def restriction(key: str) -> str:
    """The value of --http-restricted-api and --grpc-restricted-protocol."""
    return f"{settings.get('RESTRICTED_APIS')}:{header()}={key}"


def server_args(key: str) -> list[str]:
    value = restriction(key)
    return [f"--http-restricted-api={value}", f"--grpc-restricted-protocol={value}"]


def headers(key: str, protocol: str = "http") -> dict[str, str]:
    """Headers that open the restricted APIs (tritonclient's headers=). Over gRPC Triton 2.51 reads
    the metadata key triton-grpc-protocol-<header> (its refusal names it), not <header> itself."""
    if protocol not in ("http", "grpc"):
        raise ValueError(f"protocol {protocol!r}: expected 'http' or 'grpc'")
    return {(GRPC_PREFIX if protocol == "grpc" else "") + header(): key}
