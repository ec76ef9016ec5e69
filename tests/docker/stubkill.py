"""SIGKILL one model's Python stub inside a running Triton container and time the healing: the first wrong
answer after the fault and the start of 3 s of correct answers again, with the container's restarts and
what the supervisor said. Triton 2.51 stays READY with a dead stub (TESTBED §7): only answers show it."""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Callable

import psutil

CORRECT_IN_A_ROW_S = 3.0
POLL_S = 0.5


def stub_processes(container) -> list[psutil.Process]:
    """The Python backend stubs in the container's process tree, seen from the host."""
    container.reload()
    root = psutil.Process(container.attrs["State"]["Pid"])
    return [p for p in root.children(recursive=True) if p.name().startswith("triton_python_backend_stub")]


@dataclass
class Healing:
    model: str
    first_failure: float | None  # seconds from the fault
    answers_again: float | None
    restarts: int
    supervisor: list[str]

    def __str__(self) -> str:
        return (f"{self.model} stub SIGKILL: first failed request {self.first_failure} s after the fault, correct again "
                f"after {self.answers_again} s, restarts +{self.restarts}")


def kill_stub_and_wait(container, model: str, correct: Callable[[], bool], give_up_s: float) -> Healing:
    """Kill the stub serving /models/<model>/ and poll correct() every POLL_S until it has held for
    CORRECT_IN_A_ROW_S after a failure, or give_up_s passed."""
    container.reload()
    restarts = container.attrs["RestartCount"]
    stubs = [p for p in stub_processes(container) if f"/models/{model}/" in " ".join(p.cmdline())]
    assert len(stubs) == 1, [p.cmdline() for p in stub_processes(container)]
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    fault_at = time.monotonic()
    stubs[0].kill()
    first_failure = answers_again = ok_since = None
    while time.monotonic() - fault_at < give_up_s:
        now, ok = time.monotonic(), correct()
        if not ok and first_failure is None:
            first_failure = now - fault_at
        if ok and first_failure is not None:
            ok_since = ok_since or now
            if now - ok_since >= CORRECT_IN_A_ROW_S:
                answers_again = ok_since - fault_at
                break
        elif not ok:
            ok_since = None
        time.sleep(POLL_S)
    container.reload()
    logs = container.logs(since=since).decode(errors="replace")
    return Healing(model, first_failure, answers_again, container.attrs["RestartCount"] - restarts,
                   [line for line in logs.splitlines() if "tritonops-supervisor:" in line])
