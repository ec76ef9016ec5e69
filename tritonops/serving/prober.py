"""The canary's answer checks (issue 28 item 2): every model's samples (its tritonops.json) sent to the
canary alone and to each baseline server, and the canary's answers compared with the baseline's within
the descriptor's tolerances. A canary whose answers drift from the running release's fails here even
when its answers still pass a loose SLO; an error from the canary counts as a mismatch too.

`probe(...)` returns the counts that `canary.with_answers` adds to the canary's figures for `canary.decide`.
Each server is addressed directly (a GPU host's own gateway), never through the fleet's gateway, which
would spread the samples over both releases.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from .. import settings
from ..models import descriptor
from . import smoke

PROTOCOL = "http-binary"  # the cheapest exact path: raw tensors, no JSON float formatting


class ProbeError(RuntimeError):
    """The baseline itself could not answer: nothing to compare the canary with."""


@dataclasses.dataclass
class Probe:
    checks: int = 0
    mismatches: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


def _outputs(url: str, model: str) -> dict[str, str]:
    """The outputs a server lists for model: {name: datatype}."""
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(url) as client:
        return {t["name"]: t["datatype"] for t in client.get_model_metadata(model)["outputs"]}


def _as_expected(sample: descriptor.Sample, answer: dict[str, np.ndarray], datatypes: dict[str, str]) -> descriptor.Sample:
    """The baseline's answer as a sample's expected outputs, with the descriptor's tolerance per output."""
    tolerance = {t.name: (t.rtol, t.atol) for t in sample.outputs}
    return descriptor.Sample(sample.inputs, [
        descriptor.Tensor(name, datatypes[name], tuple(array.shape), descriptor.values(array),
                          *tolerance.get(name, (descriptor.DEFAULT_RTOL, descriptor.DEFAULT_ATOL)))
        for name, array in answer.items()])


def probe(canary: str, baseline: list[str], repository: Path, rounds: int = 1, models: list[str] | None = None) -> Probe:
    """Send each sample rounds times to the canary and to every baseline server (host:port, HTTP); one
    check per sample, round and baseline server. ProbeError when a baseline server does not answer."""
    from tritonclient.utils import InferenceServerException

    if not baseline:
        raise ProbeError("no baseline server to compare the canary with")
    try:
        descs = smoke.descriptors_of(Path(repository), models)
    except smoke.SmokeFailure as exc:
        raise ProbeError(str(exc)) from None
    result = Probe()
    for desc in descs:
        try:
            datatypes = _outputs(baseline[0], desc.model)
        except (InferenceServerException, OSError) as exc:
            raise ProbeError(f"baseline {baseline[0]}: model {desc.model}: {exc}") from None
        names = list(datatypes)
        for i, sample in enumerate(desc.samples * rounds):
            where = f"model {desc.model} sample {i % len(desc.samples)}"
            failure = None
            try:
                got = smoke.infer(PROTOCOL, canary, desc, sample, names)
            except (InferenceServerException, OSError) as exc:
                got, failure = None, f"canary {canary}: {where}: {exc}"
            for server in baseline:
                try:
                    want = smoke.infer(PROTOCOL, server, desc, sample, names)
                except (InferenceServerException, OSError) as exc:
                    raise ProbeError(f"baseline {server}: model {desc.model}: {exc}") from None
                result.checks += 1
                problem = failure if got is None else descriptor.compare(_as_expected(sample, want, datatypes), got)
                if problem is not None:
                    result.mismatches += 1
                    if got is not None:
                        problem = f"{where}: canary {canary} against {server}: {problem}"
                    result.problems.append(problem)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--canary", required=True, metavar="HOST:PORT", help="the canary's HTTP address")
    parser.add_argument("--baseline", required=True, action="append", metavar="HOST:PORT",
                        help="a baseline server's HTTP address; repeatable")
    parser.add_argument("--repository", type=Path, default=settings.MODEL_REPOSITORY,
                        help="the model repository whose descriptors give the samples")
    parser.add_argument("--rounds", type=int, default=1, help="times each sample is sent")
    args = parser.parse_args(argv)
    try:
        result = probe(args.canary, args.baseline, args.repository, args.rounds)
    except ProbeError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(result), indent=1))
    return 1 if result.mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
