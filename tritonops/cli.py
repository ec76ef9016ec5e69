"""`tritonops <command>`: the entry point the Makefile calls."""
from __future__ import annotations

import importlib
import sys

# command -> (module, help). Modules keep their own argparse; this only dispatches.
COMMANDS = {
    "serve": ("tritonops.server", "run the wheel's tritonserver in the foreground"),
    "smoke": ("tritonops.smoke", "send the seed request over HTTP JSON/binary and gRPC and check it"),
    "validate": ("tritonops.validate", "validate a model repository's config.pbtxt files and weights"),
    "train": ("tritonops.train", "fit nn.Linear(3, 1) and write its state_dict"),
    "loadtest": ("tritonops.loadgate", "run loadtests/linear.py headless, gated by its SLO hooks on loadtests/thresholds.toml"),
    "gateway": ("tritonops.gateway", "render the gateway's HAProxy configuration (gateway/haproxy.cfg.j2)"),
    "bench": ("tritonops.bench", "perf_analyzer sweep: shipped linear vs the seed's model vs the identity floor"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print("usage: tritonops <command> [args]\n", file=sys.stderr)
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:10} {text}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
