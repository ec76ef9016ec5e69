"""`make bench`'s check of the tuning knobs model_repository/linear/config.pbtxt's comments argue for.

The config ships max_queue_delay_microseconds 0 and one instance, and its comments say why with
figures. Each alternative (a longer queue delay, more instances) is served from a temp copy of the
model with only that knob changed, on its own server, and measured at the target concurrency right
after the shipped config (its own server too): the pair is back to back, so a box whose load drifts
during the run (as this shared one does) moves both figures alike.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..models import linear
from ..serving.server import LocalServer, free_port
from . import perf_analyzer

ALT_QUEUE_DELAY_US = 1000
ALT_INSTANCES = 2


@dataclass(frozen=True)
class Knob:
    name: str  # as the config spells it
    shipped: str
    alternative: str

    def label(self, value: str) -> str:
        return f"{self.name} {value}"


def _config(text: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(text, mc.ModelConfig())


def knobs(alt_delay_us: int | None = ALT_QUEUE_DELAY_US, alt_instances: int | None = ALT_INSTANCES,
          repository: Path = settings.MODEL_REPOSITORY) -> list[Knob]:
    """The knobs to compare, with the shipped value read from the config itself."""
    config = _config((repository / linear.MODEL / "config.pbtxt").read_text())
    out = []
    if alt_delay_us is not None:
        out.append(Knob("max_queue_delay_microseconds", str(config.dynamic_batching.max_queue_delay_microseconds),
                        str(alt_delay_us)))
    if alt_instances is not None:
        out.append(Knob("instance_group count", str(sum(g.count or 1 for g in config.instance_group) or 1),
                        str(alt_instances)))
    return out


def variant(knob: Knob, dest: Path, repository: Path = settings.MODEL_REPOSITORY, value: str | None = None) -> Path:
    """A repository at dest holding the model with knob set to value (default: its alternative)."""
    from google.protobuf import text_format

    model_dir = dest / linear.MODEL
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(repository / linear.MODEL, model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    config = _config((model_dir / "config.pbtxt").read_text())
    if knob.name == "max_queue_delay_microseconds":
        config.dynamic_batching.max_queue_delay_microseconds = int(value or knob.alternative)
    elif knob.name == "instance_group count":
        del config.instance_group[1:]
        if not config.instance_group:
            config.instance_group.add()
        config.instance_group[0].count = int(value or knob.alternative)
    else:
        raise ValueError(f"unknown knob {knob.name}")
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    return dest


def measure(knob: Knob, level: int, out: Path, opts: perf_analyzer.Options, *, expected_rate: float = 0.0
            ) -> dict[str, tuple[list[perf_analyzer.Point], dict[int, str]]]:
    """perf_analyzer at one concurrency against the shipped value, then the alternative, each on its
    own server: {"shipped": (points, failed), "alternative": (points, failed)}. expected_rate: the
    level's throughput as shipped, measured earlier (infer/s, 0 if unknown), which sizes the windows."""
    results = {}
    for which, value in (("shipped", knob.shipped), ("alternative", knob.alternative)):
        slug = knob.name.split()[0].replace("_", "-") + f"-{value}"
        repo = variant(knob, out / "knobs" / slug, value=value)
        ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
        with LocalServer(repo, host="127.0.0.1", log_path=out / f"knob-{slug}.server.log", **ports) as server:
            results[which] = perf_analyzer.against(server, linear.MODEL, out / f"knob-{slug}.perf_analyzer.csv",
                                                   opts, concurrency=[level], expected_rate=expected_rate)
    return results


def line(knob: Knob, shipped, alt, level: int) -> str:
    """One line: the knob, both figures from this run, and whether the shipped value still wins."""
    def fig(p):
        return f"{p.throughput:,.0f} infer/s, p99 {p.p99_ms:.2f} ms, avg batch {p.avg_batch:.2f}"
    if shipped is None or alt is None:
        return f"{knob.name}: shipped {knob.shipped} vs {knob.alternative}: not measured (see the notes)"
    ratio = shipped.throughput / alt.throughput
    verdict = "the shipped value is faster, as the config says" if ratio >= 1 else \
        "the alternative was faster in this run: re-check the config's comment"
    return (f"{knob.name} (c={level}): shipped {knob.shipped}: {fig(shipped)}; {knob.alternative}: {fig(alt)}; "
            f"shipped/alternative throughput {ratio:.2f}x: {verdict}")
