"""The fleet gateway's server states over time, sampled from HAProxy's stats page (CSV) while a drill
runs: which hosts were drained and back UP, and how long a killed host took to leave rotation."""
from __future__ import annotations

import threading
import time
import urllib.request

from tritonops.stack import gateway

BACKEND = "triton_http"  # the gRPC and metrics backends follow the same checks


def server_states(stats_url: str, timeout: float = 2) -> dict[tuple[str, str], str]:
    """(backend, server) -> status (UP, DOWN, DRAIN, MAINT, "DOWN 1/2", ...) from /stats;csv."""
    with urllib.request.urlopen(f"{stats_url};csv", timeout=timeout) as r:
        return gateway.server_states(r.read().decode())


# The last health check's outcome per server: where the time to leave rotation goes (a check that
# waited for its answer shows it in check_duration, ms; check_status L7STS/L7TOUT/L4CON...).
CHECK_FIELDS = ("status", "check_status", "check_code", "check_duration")


def server_checks(stats_url: str, timeout: float = 2) -> dict[tuple[str, str], tuple[str, ...]]:
    """(backend, server) -> (status, check_status, check_code, check_duration) from /stats;csv."""
    with urllib.request.urlopen(f"{stats_url};csv", timeout=timeout) as r:
        lines = r.read().decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
    return {(r["pxname"], r["svname"]): tuple(r.get(f, "") for f in CHECK_FIELDS)
            for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")}


class StateSampler:
    """Samples server_states() every `period` seconds in a thread for the length of a `with` block."""

    def __init__(self, stats_url: str, period: float = 0.1):
        self.stats_url, self.period = stats_url, period
        self.samples: list[tuple[float, dict[tuple[str, str], str]]] = []
        self.checks: list[tuple[float, dict[tuple[str, str], tuple[str, ...]]]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                checks = server_checks(self.stats_url)
                now = time.monotonic()
                self.samples.append((now, {key: row[0] for key, row in checks.items()}))
                self.checks.append((now, checks))
            except OSError:
                self.errors += 1
            self._stop.wait(self.period)

    def __enter__(self) -> "StateSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def history(self, server: str, backend: str = BACKEND) -> list[str]:
        """The server's successive distinct states, e.g. ['UP', 'DRAIN', 'DOWN', 'MAINT', 'UP']."""
        seen: list[str] = []
        for _, states in self.samples:
            state = states.get((backend, server), "absent")
            if not seen or seen[-1] != state:
                seen.append(state)
        return seen

    def first(self, server: str, predicate, after: float, backend: str = BACKEND) -> float | None:
        """Seconds from `after` (a time.monotonic()) to the first sample whose state passes `predicate`."""
        for t, states in self.samples:
            if t >= after and predicate(states.get((backend, server), "absent")):
                return t - after
        return None

    def check_log(self, server: str, after: float, backend: str = BACKEND) -> list[str]:
        """From `after` on, each change of (status, last check's status/code/duration ms), with its time."""
        seen: list[str] = []
        last = None
        for t, checks in self.checks:
            row = checks.get((backend, server))
            if t >= after and row != last:
                last = row
                seen.append(f"{t - after:+.2f} s {'/'.join(row) if row else 'absent'}")
        return seen

    def never_all_out(self, servers: list[str], backend: str = BACKEND) -> bool:
        """True when at every sample at least one of `servers` was UP (in rotation and answering)."""
        return all(any(states.get((backend, s)) == "UP" for s in servers) for _, states in self.samples)
