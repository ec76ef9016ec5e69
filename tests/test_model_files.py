"""The committed model files are what the training script produces, and mean what they say."""
from __future__ import annotations

import torch

from tritonops.models import linear, train


def test_committed_weights_are_exactly_what_training_produces():
    assert linear.WEIGHTS.read_bytes() == train.serialize(train.fit())


def test_weights_are_a_state_dict_close_to_the_ground_truth_line():
    state = torch.load(linear.WEIGHTS, weights_only=True)
    assert set(state) == {"weight", "bias"}
    assert state["weight"].shape == (1, 3) and state["weight"].dtype == torch.float32
    torch.testing.assert_close(state["weight"], torch.tensor([train.TRUE_WEIGHT]), atol=1e-3, rtol=0)
    torch.testing.assert_close(state["bias"], torch.tensor([train.TRUE_BIAS]), atol=1e-3, rtol=0)
