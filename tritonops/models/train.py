"""Fit nn.Linear(3, 1) on synthetic data drawn around a known line and export its state_dict.

Deterministic: fixed seed, float64 full-batch gradient descent on the CPU, cast to float32 at the
end, so the committed weights are reproducible byte for byte (tests/test_model_files.py checks).
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch
from torch import nn

from . import linear

# Ground truth the data is drawn from: y = x @ TRUE_WEIGHT + TRUE_BIAS (+ small noise).
TRUE_WEIGHT = (0.5, -1.25, 2.0)
TRUE_BIAS = 0.75
SEED = 20241001
SAMPLES = 1024
NOISE = 0.01
STEPS = 500
LEARNING_RATE = 0.1

WEIGHTS_PATH = linear.WEIGHTS


def fit() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(SEED)
    x = torch.randn(SAMPLES, 3, generator=gen, dtype=torch.float64)
    w = torch.tensor(TRUE_WEIGHT, dtype=torch.float64).unsqueeze(1)
    y = x @ w + TRUE_BIAS + NOISE * torch.randn(SAMPLES, 1, generator=gen, dtype=torch.float64)

    model = nn.Linear(3, 1, dtype=torch.float64)
    with torch.no_grad():  # start from zeros, not a random init: nothing depends on init order
        model.weight.zero_()
        model.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    for _ in range(STEPS):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    return {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}


def serialize(state_dict: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonops train", description=__doc__)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH, help="where to write the state_dict")
    args = parser.parse_args(argv)
    state = fit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(serialize(state))
    print(f"wrote {args.out}: weight={state['weight'].tolist()} bias={state['bias'].tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
