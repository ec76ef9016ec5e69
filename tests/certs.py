"""A throwaway TLS certificate for the suites that turn the gateway's TLS on: self-signed with
openssl, valid for a day for localhost and 127.0.0.1.

Imported as `certs` (tests/ is on sys.path, like ci_policy).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class SelfSigned:
    cert: Path  # also the CA file a client trusts
    key: Path
    pem: Path  # certificate then key: the one file HAProxy's `crt` loads


def self_signed(directory: Path) -> SelfSigned:
    if not shutil.which("openssl"):
        pytest.fail("openssl is not installed (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    made = SelfSigned(directory / "cert.pem", directory / "key.pem", directory / "tls.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(made.key), "-out", str(made.cert)], check=True, capture_output=True)
    made.pem.write_text(made.cert.read_text() + made.key.read_text())
    return made
