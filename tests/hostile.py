"""Raw requests no client library sends: chunked bombs, slow headers. Shared by the suites that
drill the gateway (tests/gateway) and the compose stack (tests/docker).

Imported as `hostile` (tests/ is on sys.path, like ci_policy).
"""
from __future__ import annotations

import socket
import time

INFER_PATH = "/v2/models/linear/infer"
# CVE-2025-23310: Triton 2.51's HTTP chunk parser overflows its stack on many tiny chunks. 7 million
# 1-byte chunks (42 MB on the wire) kill it even with the compose stack's 64 MiB stack limit.
BOMB_CHUNKS = 7_000_000


def chunked_post(n_chunks: int, path: str = INFER_PATH) -> bytes:
    """One POST whose body is n_chunks chunks of one byte each."""
    return (f"POST {path} HTTP/1.1\r\nHost: triton\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode() + b"1\r\na\r\n" * n_chunks + b"0\r\n\r\n"


def send_raw(host: str, port: int, request: bytes, timeout: float = 60) -> bytes:
    """Send request bytes and return what came back ('' if the peer closed without answering).
    A peer that answers and closes before the body is all sent (a 413, say) is not an error."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    break
        except (ConnectionResetError, socket.timeout):
            pass
    return b"".join(chunks)


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def status_of(response: bytes) -> int | None:
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None


def slow_headers(host: str, port: int, give_up: float) -> tuple[float, bytes]:
    """Slowloris: send a header line every second and never finish; return (seconds until the
    server cut the connection, what it answered). give_up bounds the test."""
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=give_up) as s:
        s.sendall(f"POST {INFER_PATH} HTTP/1.1\r\nHost: triton\r\n".encode())
        answer = b""
        while time.monotonic() - start < give_up:
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            s.settimeout(1)
            try:
                answer = s.recv(65536)  # b"" (closed) or the server's answer (408): cut either way
                break
            except socket.timeout:
                continue
            except OSError:
                break
        return time.monotonic() - start, answer
