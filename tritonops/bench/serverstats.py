"""Triton's statistics extension (GET /v2/models/<model>/stats), read with tritonclient.

The API is restricted here (versions.env RESTRICTED_APIS): pass the admin key's headers
(LocalServer.admin_headers()). Counters are cumulative since the model loaded, so what a run did
is the difference of two reads: inference_count counts rows, execution_count the model's execute()
calls after dynamic batching, so their ratio is the average batch the batcher formed.
"""
from __future__ import annotations

from dataclasses import dataclass


class StatsError(RuntimeError):
    pass


@dataclass(frozen=True)
class BatchCounts:
    inferences: int
    executions: int

    def __sub__(self, other: "BatchCounts") -> "BatchCounts":
        return BatchCounts(self.inferences - other.inferences, self.executions - other.executions)

    @property
    def avg_batch(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0


def batch_counts(url: str, model: str, headers: dict[str, str] | None = None) -> BatchCounts:
    """inference_count and execution_count of one model (all versions) on the server at url (host:port)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    try:
        with httpclient.InferenceServerClient(url, connection_timeout=10, network_timeout=10) as client:
            stats = client.get_inference_statistics(model, headers=headers)
    except (InferenceServerException, OSError) as exc:
        raise StatsError(f"cannot read {model}'s statistics from {url}: {exc}") from None
    entries = [s for s in stats.get("model_stats", []) if s.get("name") == model]
    if not entries:
        raise StatsError(f"{url} has no statistics for {model}: {stats}")
    return BatchCounts(sum(int(s.get("inference_count", 0)) for s in entries),
                       sum(int(s.get("execution_count", 0)) for s in entries))


def prober(url: str, model: str, headers: dict[str, str] | None = None):
    """A no-argument callable reading batch_counts, for perf_analyzer.run(batch_probe=...)."""
    return lambda: batch_counts(url, model, headers)
