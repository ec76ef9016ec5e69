"""A steady stream of checked inferences (one client, back to back) for the length of a `with` block:
how many requests a deploy or a fault cost, and the longest stretch without a correct answer. The requests
are the samples of every model of a repository's descriptors (tritonops.json), each answer checked against
the descriptor, so any repository the drill deployed can be the load."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pathlib import Path

from tritonops.models import descriptor
from tritonops.serving import smoke


@dataclass
class LoadFigures:
    sent: int = 0
    failed: int = 0
    longest_outage_s: float = 0.0  # first failure to the next correct answer, the longest such stretch
    last_errors: list[str] = field(default_factory=list)
    failed_after_last_success: int = 0

    def __str__(self) -> str:
        return (f"{self.sent} requests, {self.failed} failed, longest outage {self.longest_outage_s:.1f} s"
                + (f" (last error: {self.last_errors[-1]})" if self.last_errors else ""))


class SteadyLoad:
    """HTTP inferences to `url` (host:port), the samples of repository's models in turn, every answer checked."""

    def __init__(self, url: str, repository: Path, timeout_s: float = 10):
        self.url, self.timeout_s = url, timeout_s
        self.requests = [(d, s) for d in smoke.descriptors_of(repository) for s in d.samples]
        self.figures = LoadFigures()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, client, desc: descriptor.Descriptor, sample: descriptor.Sample) -> str | None:
        import tritonclient.http as httpclient

        try:
            inputs = []
            for t in sample.inputs:
                inputs.append(httpclient.InferInput(t.name, list(t.shape), t.datatype))
                inputs[-1].set_data_from_numpy(t.array(), binary_data=True)
            result = client.infer(desc.model, inputs)
            names = [out["name"] for out in result.get_response()["outputs"]]
            return descriptor.check(desc, sample, {name: result.as_numpy(name) for name in names})
        except Exception as exc:  # noqa: BLE001 - any failure is a lost request
            return f"{type(exc).__name__}: {exc}"[:200]

    def _run(self) -> None:
        import tritonclient.http as httpclient

        outage_started = None
        f = self.figures
        while not self._stop.is_set():
            with httpclient.InferenceServerClient(self.url, connection_timeout=self.timeout_s,
                                                  network_timeout=self.timeout_s) as client:
                while not self._stop.is_set():
                    problem = self._one(client, *self.requests[f.sent % len(self.requests)])
                    f.sent += 1
                    now = time.monotonic()
                    if problem is None:
                        if outage_started is not None:
                            f.longest_outage_s = max(f.longest_outage_s, now - outage_started)
                            outage_started = None
                        f.failed_after_last_success = 0
                        continue
                    f.failed += 1
                    f.failed_after_last_success += 1
                    f.last_errors = (f.last_errors + [problem])[-5:]
                    outage_started = outage_started or now
                    time.sleep(0.05)
                    break  # a new connection after a failure

    def __enter__(self) -> "SteadyLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 5)
