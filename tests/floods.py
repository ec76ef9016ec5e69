"""Floods from one client, in raw bytes (no h2 package here): HTTP/2 streams that send part of a body
and never finish, idle connections, key guessing. Standard library only, so the same file also runs as
a script inside a container on a compose stack's network (`python3 - host port what ... < floods.py`).

Imported as `floods` (tests/ is on sys.path, like hostile).
"""
from __future__ import annotations

import socket
import statistics
import struct
import sys
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
INFER_PATH = "/v2/models/linear/infer"
GRPC_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


def _int(value: int, prefix_bits: int, first: int) -> bytes:
    """HPACK integer (RFC 7541 5.1) with the first byte's high bits set to `first`."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def _literal(name: str, value: str) -> bytes:
    """Literal header field without indexing, new name, no Huffman."""
    n, v = name.encode(), value.encode()
    return b"\x00" + _int(len(n), 7, 0) + n + _int(len(v), 7, 0) + v


def headers_block(path: str, authority: str, content_length: int, grpc: bool, extra: dict | None = None) -> bytes:
    block = b"\x83" + b"\x86"  # :method POST, :scheme http (static table)
    block += _literal(":path", path) + _literal(":authority", authority)
    if grpc:
        block += _literal("content-type", "application/grpc") + _literal("te", "trailers")
    else:
        block += _literal("content-type", "application/json") + _literal("content-length", str(content_length))
    for k, v in (extra or {}).items():
        block += _literal(k, v)
    return block


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _settle(s: socket.socket) -> None:
    """Read the server's SETTINGS and acknowledge them (best effort, non-blocking)."""
    try:
        s.settimeout(2)
        s.recv(65536)
    except OSError:
        pass
    s.setblocking(False)
    try:
        s.send(frame(4, 1, 0))
    except OSError:
        pass


def h2_hold(host: str, port: int, connections: int, streams: int, grpc: bool, part: int = 30000,
            length: int = 60000, extra: dict | None = None, source: str = "") -> list[socket.socket]:
    """Open `connections` HTTP/2 connections; on each, `streams` POSTs that announce `length` bytes and send
    `part` of them, then stop. Returns the sockets (the caller holds, then closes them). Connections the
    gateway refuses are simply fewer sockets."""
    held = []
    path = GRPC_INFER_PATH if grpc else INFER_PATH
    for _ in range(connections):
        try:
            s = socket.create_connection((host, port), timeout=5, source_address=(source, 0) if source else None)
        except OSError:
            continue
        try:
            s.sendall(PREFACE + frame(4, 0, 0))
            _settle(s)
            out = b""
            for i in range(streams):
                sid = 2 * i + 1
                out += frame(1, 0x4, sid, headers_block(path, f"{host}:{port}", length, grpc, extra))
                out += frame(0, 0, sid, b"x" * min(part, 16384))
                if part > 16384:
                    out += frame(0, 0, sid, b"x" * (part - 16384))
            try:
                s.send(out)  # what fits; flow control holds the rest, which is the point
            except BlockingIOError:
                pass
            held.append(s)
        except OSError:
            s.close()
    return held


def idle(host: str, port: int, connections: int, source: str = "") -> list[socket.socket]:
    """Connections that send nothing."""
    held = []
    for _ in range(connections):
        try:
            held.append(socket.create_connection((host, port), timeout=5, source_address=(source, 0) if source else None))
        except OSError:
            pass
    return held


def alive(sockets: list[socket.socket]) -> int:
    """How many of these connections the gateway still holds open (a closed one reads EOF or errors)."""
    n = 0
    for s in sockets:
        try:
            s.setblocking(False)
            while True:
                if not s.recv(65536):
                    break
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def close_all(sockets: list[socket.socket]) -> None:
    for s in sockets:
        try:
            s.close()
        except OSError:
            pass


class GoodClient(threading.Thread):
    """The well-behaved client beside a drill: seed inferences over one keep-alive HTTP/1.1 connection
    (from `source`), every answer checked against the reference; latencies and failures recorded."""

    def __init__(self, host: str, port: int, source: str = "", headers: dict | None = None):
        super().__init__(daemon=True)
        self.host, self.port, self.source, self.headers = host, port, source, headers or {}
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.started: list[float] = []
        self.stop = threading.Event()

    def run(self):
        import http.client

        from tritonops.models import linear
        body, headers = linear.http_body(linear.SEED_X)
        conn = None
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                conn = conn or http.client.HTTPConnection(self.host, self.port, timeout=10,
                                                          source_address=(self.source, 0) if self.source else None)
                conn.request("POST", f"/v2/models/{linear.MODEL}/infer", body, {**headers, **self.headers})
                r = conn.getresponse()
                raw = r.read()
                problem = (f"HTTP {r.status}: {raw[:200]!r}" if r.status != 200 else
                           linear.check_output(linear.SEED_X, linear.parse_http_response(raw, r.headers)))
            except (OSError, http.client.HTTPException) as exc:
                problem, conn = f"{type(exc).__name__}: {exc}", None
            self.latencies.append(time.monotonic() - t0)
            self.started.append(t0)
            if problem:
                self.failures.append(problem)
            time.sleep(0.05)

    def slowest_at(self) -> float:
        """When the slowest request started, seconds after the first."""
        i = max(range(len(self.latencies)), key=self.latencies.__getitem__)
        return round(self.started[i] - self.started[0], 1)

    def p99(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98] if len(self.latencies) >= 2 else float("inf")


if __name__ == "__main__":  # python3 - HOST PORT h2|grpc|idle CONNECTIONS STREAMS SECONDS
    host, port, what, n, streams, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:7])
    socks = idle(host, port, n) if what == "idle" else h2_hold(host, port, n, streams, grpc=what == "grpc")
    print(f"opened {len(socks)}", flush=True)
    time.sleep(seconds)
    print(f"alive {alive(socks)}", flush=True)
    close_all(socks)
