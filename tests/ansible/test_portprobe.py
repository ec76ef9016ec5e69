"""The firewall drills' probe on loopback: it must tell connected, refused and timed out apart."""
from __future__ import annotations

import socket
import time

import portprobe


def listener(backlog: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


def test_probe_tells_connected_refused_and_timeout_apart():
    open_ = listener(8)
    closed = listener(0)
    closed_port = closed.getsockname()[1]
    closed.close()
    # A full accept queue drops new SYNs, as a firewall's drop rule does: the connect times out.
    full = listener(0)
    filler = socket.create_connection(full.getsockname(), timeout=2)
    targets = [open_.getsockname(), ("127.0.0.1", closed_port), full.getsockname()]
    try:
        results = portprobe.probe("127.0.0.1", targets, timeout=1)
    finally:
        for sock in (filler, open_, full):
            sock.close()
    assert results == dict(zip(targets, [portprobe.CONNECTED, portprobe.REFUSED, portprobe.TIMEOUT]))


def test_probe_reports_a_source_address_the_host_lacks():
    assert portprobe.probe("192.0.2.77", [("127.0.0.1", 9)], timeout=1) == {("127.0.0.1", 9): portprobe.NO_SOURCE}


def test_poller_polls_every_period_and_counts_outcomes():
    open_ = listener(64)
    try:
        with portprobe.Poller("127.0.0.1", "::1", [open_.getsockname()], period=0.1, timeout=1) as poller:
            time.sleep(1.05)
    finally:
        open_.close()
    # Rounds against the poller's own clock, not the 1.05 s slept: on a busy box the sleep can end late
    # (more rounds) or the thread start late (fewer); a poller off its period still misses this by far.
    expected = poller.polled_s / 0.1
    assert 0.7 * expected <= poller.rounds <= expected + 2, (poller.rounds, poller.polled_s)
    assert poller.count(portprobe.CONNECTED) == poller.rounds, poller.outcomes
