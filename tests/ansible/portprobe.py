"""TCP connects from a chosen source address, each classified: what a firewall drill tells apart.

A dropped SYN times out; a port nobody filters answers (connected) or resets (refused): a refusal
means the packet reached the host's TCP stack, so the firewall was not in its way.

    probe(source, [(address, port), ...], timeout=3)  -> {(address, port): "timeout", ...}
    with Poller(source4, source6, targets, period=0.2) as poller: ...  # poller.outcomes: Counter
"""
from __future__ import annotations

import errno
import selectors
import socket
import threading
import time
from collections import Counter

CONNECTED, REFUSED, TIMEOUT, UNREACHABLE, NO_SOURCE = "connected", "refused", "timeout", "unreachable", "no-source"
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}


def _outcome(err: int) -> str:
    if err == 0:
        return CONNECTED
    if err == errno.ECONNREFUSED:
        return REFUSED
    if err in _UNREACHABLE:
        return UNREACHABLE
    return f"error:{errno.errorcode.get(err, err)}"


class _Attempts:
    """Non-blocking connects in flight, each with a deadline; finished ones are handed back."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.selector = selectors.DefaultSelector()
        self.deadlines: dict[socket.socket, float] = {}

    def start(self, source: str, target: tuple[str, int], key) -> tuple | None:
        """Start one connect; returns (key, outcome) at once when it cannot even start."""
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((source, 0))
        except OSError:  # the address is gone, e.g. the veth while the test host reboots
            sock.close()
            return key, NO_SOURCE
        err = sock.connect_ex(target)
        if err not in (errno.EINPROGRESS, 0):
            sock.close()
            return key, _outcome(err)
        self.selector.register(sock, selectors.EVENT_WRITE, key)
        self.deadlines[sock] = time.monotonic() + self.timeout
        return None

    def step(self, wait: float) -> list[tuple]:
        """Wait up to `wait` s; return (key, outcome) for connects that finished or timed out."""
        done = []
        if self.deadlines:
            for selkey, _ in self.selector.select(timeout=max(wait, 0)):
                done.append((selkey.data, _outcome(selkey.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))))
                self._close(selkey.fileobj)
        else:
            time.sleep(max(wait, 0))
        now = time.monotonic()
        for sock in [s for s, deadline in self.deadlines.items() if deadline <= now]:
            done.append((self.selector.get_key(sock).data, TIMEOUT))
            self._close(sock)
        return done

    def _close(self, sock: socket.socket) -> None:
        self.selector.unregister(sock)
        del self.deadlines[sock]
        sock.close()

    def __len__(self) -> int:
        return len(self.deadlines)


def probe(source: str, targets: list[tuple[str, int]], timeout: float = 3.0) -> dict[tuple[str, int], str]:
    """Connect from `source` to every target at once; the outcome of each."""
    attempts, results = _Attempts(timeout), {}
    for target in targets:
        if (finished := attempts.start(source, target, target)) is not None:
            results[finished[0]] = finished[1]
    while len(attempts):
        results.update(attempts.step(0.1))
    return results


class Poller(threading.Thread):
    """Every `period` s, connect to every target (IPv4 ones from source4, IPv6 ones from source6),
    until stopped; `outcomes` counts (target, outcome) pairs, `phases` (phase(), outcome) pairs with
    phase() read when each connect started (e.g. the test host's boot number), `rounds` the polls."""

    def __init__(self, source4: str, source6: str, targets: list[tuple[str, int]], period: float = 0.2,
                 timeout: float = 1.0, phase=lambda: None):
        super().__init__(name="portprobe", daemon=True)
        self.sources = {socket.AF_INET: source4, socket.AF_INET6: source6}
        self.targets, self.period, self.timeout = targets, period, timeout
        self.outcomes: Counter = Counter()
        self.phases: Counter = Counter()
        self.phase = phase
        self.first_seen: dict[str, float] = {}  # outcome -> seconds after the start
        self.rounds = 0
        self.polled_s = 0.0  # from the first round to stop(): `rounds` is about polled_s / period + 1
        self._halt = threading.Event()
        self._t0 = 0.0

    def run(self) -> None:
        attempts = _Attempts(self.timeout)
        self._t0 = next_round = time.monotonic()
        while not self._halt.is_set() or len(attempts):
            if not self._halt.is_set() and time.monotonic() >= next_round:
                self.rounds += 1
                phase = self.phase()
                for target in self.targets:
                    source = self.sources[socket.AF_INET6 if ":" in target[0] else socket.AF_INET]
                    if (finished := attempts.start(source, target, (target, phase))) is not None:
                        self._count(*finished)
                next_round += self.period
            for finished in attempts.step(min(0.05, max(next_round - time.monotonic(), 0))):
                self._count(*finished)

    def _count(self, key: tuple, outcome: str) -> None:
        target, phase = key
        self.outcomes[target, outcome] += 1
        self.phases[phase, outcome] += 1
        self.first_seen.setdefault(outcome, round(time.monotonic() - self._t0, 1))

    def stop(self) -> None:
        self.polled_s = time.monotonic() - self._t0
        self._halt.set()
        self.join()

    def __enter__(self) -> "Poller":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self, outcome: str) -> int:
        return sum(n for (_, seen), n in self.outcomes.items() if seen == outcome)
