"""`make bench`'s embed rows: the embed ensemble (tokenizer -> encoder, all-MiniLM-L6-v2) with and without
dynamic batching, measured back to back, and how long its server takes to load it.

Each variant gets its own real tritonserver: the shipped model repository, whole, as `make serve` serves
it (its load time is the one the issue's target is about), then the embed pipeline alone (tokenizer,
encoder, embed; linear would only add its stub's load) in a copy whose tokenizer and encoder have no
dynamic_batching: every request its own execute() and forward pass; everything else symlinked to the
shipped files, so only that changes. perf_analyzer sends the fixed sentences (tritonops.models.embedding.SENTENCES, its --input-data), one
per request (-b 1), so its infer/s are sentences/s; the average batch is the encoder's, the batch the
dynamic batcher formed. Load time: LocalServer.start(), from launching tritonserver until it is READY
(every model loaded, embed last: it waits for its steps), repository validation (~0.2 s) included.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import settings
from ..models import embedding
from ..serving.server import LocalServer, free_port
from . import perf_analyzer

LEVELS = (1, 4, 16)
LOAD_TARGET_S = 20.0  # issue 12: the embed pipeline's load time on the 2-core box
# Count windows hold at least this many requests (perf_analyzer's default floor is 50: at the 5-15
# sentences/s of a busy box, the bench smoke's 500 ms windows lasted 4-10 s each). The bench's own
# 4 s windows hold hundreds, except at its first level (no rate known yet): ~1 s, tens of requests.
MIN_WINDOW_REQUESTS = 8
SHIPPED, UNBATCHED = "embed", "embed, no batching"
PIPELINE = (embedding.TOKENIZER, embedding.ENCODER, embedding.MODEL)
WHAT = {SHIPPED: "shipped model_repository (tokenizer and encoder with dynamic batching)",
        UNBATCHED: "the embed pipeline alone, tokenizer and encoder without dynamic_batching"}


@dataclass
class Measured:
    """One variant: perf_analyzer's points, the levels without a result (and why), the load time."""

    points: list[perf_analyzer.Point] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    load_s: float = 0.0


def input_data(path: Path) -> Path:
    """perf_analyzer's --input-data JSON: one step per fixed sentence (input `text`, shape [1])."""
    path.write_text(json.dumps({"data": [{embedding.INPUT: [s]} for s in embedding.SENTENCES]}, ensure_ascii=False))
    return path


def unbatched(dest: Path, repository: Path = settings.MODEL_REPOSITORY) -> Path:
    """A repository at dest: the shipped embed pipeline, dynamic_batching removed from its steps' configs
    (written here); every other file a symlink to the shipped one."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for model in (Path(repository).resolve() / name for name in PIPELINE):
        if model.name not in (embedding.TOKENIZER, embedding.ENCODER):
            (dest / model.name).symlink_to(model)
            continue
        (dest / model.name).mkdir()
        for item in model.iterdir():
            if item.name not in ("config.pbtxt", "__pycache__"):
                (dest / model.name / item.name).symlink_to(item)
        config = text_format.Parse((model / "config.pbtxt").read_text(), mc.ModelConfig())
        config.ClearField("dynamic_batching")
        (dest / model.name / "config.pbtxt").write_text(text_format.MessageToString(config))
    return dest


def measure(name: str, repository: Path, levels: list[int], opts: perf_analyzer.Options, out: Path) -> Measured:
    """Serve repository, time its load, then perf_analyzer at each level against embed."""
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    server = LocalServer(repository, host="127.0.0.1", log_path=out / f"{_slug(name)}.server.log", **ports)
    started = time.monotonic()
    server.start()
    result = Measured(load_s=time.monotonic() - started)
    try:
        result.points, result.failed = perf_analyzer.against(
            server, embedding.MODEL, out / f"{_slug(name)}.perf_analyzer.csv",
            replace(opts, min_window_requests=MIN_WINDOW_REQUESTS), concurrency=levels,
            extra_args=["--input-data", str(input_data(out / "embed.input-data.json"))], batch_model=embedding.ENCODER)
    finally:
        server.stop()
    return result


def _slug(name: str) -> str:
    return name.replace(", ", "-").replace(" ", "-")


def run(levels: list[int], opts: perf_analyzer.Options, out: Path) -> dict[str, Measured]:
    """Both variants, shipped first; a variant whose server did not start raises (the bench reports it)."""
    found = {}
    for name, repository in ((SHIPPED, settings.MODEL_REPOSITORY), (UNBATCHED, unbatched(out / "repos" / "embed-unbatched"))):
        print(f"bench: {name} ({WHAT[name]}) ...", flush=True)
        found[name] = measure(name, repository, levels, opts, out)
    return found


def compared_level(found: dict[str, Measured], target_c: int) -> int | None:
    """The level the gain is read at: target_c when both variants measured it, else their highest common one."""
    common = set.intersection(*({p.concurrency for p in m.points} for m in found.values())) if found else set()
    return target_c if target_c in common else max(common, default=None)


def summary(found: dict[str, Measured], target_c: int) -> str:
    """bench.md's embed paragraph: what the rows are, the batching gain, the load times."""
    lines = [f"Embed rows: the {embedding.MODEL} ensemble, one sentence per request (perf_analyzer -b 1, --input-data: "
             f"the {len(embedding.SENTENCES)} fixed sentences), so infer/s are sentences/s; avg batch is the "
             f"encoder's (sentences per forward pass). `{UNBATCHED}`: {WHAT[UNBATCHED]}, measured right after."]
    level = compared_level(found, target_c)
    if level is not None:
        on, off = ({p.concurrency: p for p in found[n].points}[level] for n in (SHIPPED, UNBATCHED))
        lines.append(f"Dynamic batching at c={level}: {on.throughput / off.throughput:.2f}x the sentences/s "
                     f"({on.throughput:,.0f} against {off.throughput:,.0f}), p99 {on.p99_us / off.p99_us:.2f}x "
                     f"({on.p99_us / 1000:.1f} ms against {off.p99_us / 1000:.1f} ms).")
    where = {SHIPPED: "whole repository", UNBATCHED: "embed pipeline alone"}
    loads = ", ".join(f"{n} {m.load_s:.1f} s ({where[n]})" for n, m in found.items())
    lines.append(f"Load time (LocalServer.start: tritonserver launched to READY): {loads}; "
                 f"target <= {LOAD_TARGET_S:g} s for the whole repository.")
    return "\n".join(lines) + "\n"


def targets(found: dict[str, Measured]) -> list[tuple[str, str, str, bool]]:
    """(target, measured, wanted, met): the shipped repository's load time."""
    if SHIPPED not in found:
        return []
    load = found[SHIPPED].load_s
    return [("embed load time (server start to READY)", f"{load:.1f} s", f"<= {LOAD_TARGET_S:g} s", load <= LOAD_TARGET_S)]
